// The operator view's extra panels: probability, timings, warnings, server status, models, feedback counters.
// On the kiosk these elements do not exist and every function here does nothing.
import { call, errorText } from "./api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export function renderDetails(result) {
  if (!$("details")) return;
  const p = result.p_female;
  const known = p !== null && p !== undefined;
  $("mark").hidden = !known;
  if (known) $("mark").style.left = (100 * p) + "%";
  $("pvalue").textContent = known ? "p = " + p.toFixed(3) : "—";
  const timings = result.timings_ms || {};
  $("timings").textContent = Object.keys(timings).map((k) => `${k} ${Number(timings[k]).toFixed(1)} ms`).join(" · ")
    + (result.model ? ` · ${t("model")} ${result.model}` : "");
  const warnings = result.warnings || [];
  $("warnings").replaceChildren(...warnings.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  $("warnings-block").hidden = warnings.length === 0;
  $("details").hidden = false;
}

function metricsText(metrics) {
  if (!metrics || typeof metrics !== "object") return "";
  return Object.entries(metrics).filter(([, v]) => typeof v === "number").slice(0, 4)
    .map(([k, v]) => `${k} ${Math.abs(v) <= 1 ? v.toFixed(3) : v}`).join(", ");
}

function row(cells, bold) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i === 0 && bold) td.style.fontWeight = "700";
    tr.appendChild(td);
  });
  return tr;
}

async function refreshHealth() {
  try {
    const h = await call("health");
    $("health").textContent = t("status_line", { model: h.model, version: h.model_version || "—", gvd: h.version,
                                                 uptime: Math.round(h.uptime_seconds || 0) });
  } catch (error) {
    $("health").textContent = errorText(error);
  }
}

async function refreshFeedback() {
  try {
    const f = await call("feedback");
    $("feedback-counts").textContent = t("feedback_counts", {
      rows: f.rows, pending: f.corrections_pending, threshold: f.threshold, retrain: f.retrain_status || "—",
    });
  } catch (error) {
    $("feedback-counts").textContent = errorText(error);
  }
}

async function refreshModels() {
  try {
    const answer = await call("models");
    const models = Array.isArray(answer) ? answer : answer.models || [];
    $("models").replaceChildren(...models.map((m) => row([
      m.name + (m.loaded ? ` (${t("loaded")})` : ""), m.cell || "",
      m.size_bytes ? (m.size_bytes / 1024).toFixed(0) + " KB" : "", metricsText(m.metrics),
    ], m.loaded)));
  } catch (error) {
    $("models").replaceChildren(row([errorText(error)], false));
  }
}

export async function refreshOperator() {
  if (!$("health")) return;
  await Promise.all([refreshHealth(), refreshFeedback(), refreshModels()]);
}
