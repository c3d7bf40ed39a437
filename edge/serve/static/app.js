// The kiosk and the operator view: record or choose a recording, show the answer, take feedback.
import { call, errorText } from "./api.js";
import { loadStrings, percent, seconds, t } from "./i18n.js";
import { canRecord, LimitedRecorder } from "./recorder.js";
import { refreshOperator, renderDetails } from "./operator.js";

const $ = (id) => document.getElementById(id);
const view = document.body.dataset.view;
const idleSeconds = Number(document.body.dataset.idleSeconds) || 0;
const maxRecordSeconds = Number(document.body.dataset.maxRecordSeconds) || 15;

let current = null;      // the result on screen, the only one feedback may be given for
let requestSeq = 0;      // answers to an older request than the latest are dropped
let defaultModel = "";
let maxUploadBytes = null;
let idleTimer = null;
let pending = 0;         // requests to /predict on their way
let starting = false;    // waiting for the microphone: a second press must not open it twice

const recorder = new LimitedRecorder(maxRecordSeconds, showCountdown, (blob, name) => {
  showRecording(false);
  if (blob.size === 0) showError(t("reason_too_short")); // stopped before any audio arrived
  else analyse(blob, name);
});

function show(element, on) { element.hidden = !on; }

function showError(message, where = $("error")) {
  where.textContent = message;
  show(where, true);
}

// Back to "nothing on screen": no result, no feedback, no error. Any answer still on its way is dropped.
function clearResult() {
  requestSeq += 1;
  current = null;
  document.body.classList.remove("has-result");
  for (const id of ["result", "feedback", "error", "again", "saved", "feedback-error"]) show($(id), false);
  if ($("details")) show($("details"), false);
  $("consent").checked = false;
  setAnswersEnabled(false);
  show($("answers"), true);
  $("status").textContent = "";
}

function setAnswersEnabled(on) {
  for (const button of document.querySelectorAll("#answers button")) button.disabled = !on;
}

async function analyse(blob, name) {
  clearResult();
  const seq = requestSeq;
  if (maxUploadBytes !== null && blob.size > maxUploadBytes) {
    showError(t("error_upload_too_large"));
    return;
  }
  const form = new FormData();
  form.append("file", blob, name);
  const model = $("model").value;
  $("status").textContent = t("analysing");
  pending += 1;
  try {
    const result = await call("predict" + (model ? "?model=" + encodeURIComponent(model) : ""),
                              { method: "POST", body: form });
    if (seq !== requestSeq) return;
    $("status").textContent = "";
    render(result);
  } catch (error) {
    if (seq !== requestSeq) return;
    $("status").textContent = "";
    showError(errorText(error));
  } finally {
    pending -= 1;
  }
  refreshOperator();
}

function kindOf(result) {
  if (result.label === "no_speech") return "no_speech";
  return result.mixed ? "mixed" : result.label;
}

function render(result) {
  const kind = kindOf(result);
  $("result").dataset.kind = kind;
  $("label").textContent = t("label_" + kind);
  const facts = [];
  if (kind === "female" || kind === "male") facts.push(t("confidence", { percent: percent(result.confidence) }));
  if (kind !== "no_speech") {
    facts.push(t("speech_facts", { speech: seconds(result.speech_seconds), duration: seconds(result.duration) }));
  }
  $("facts").textContent = facts.join(" · ");
  show($("reason"), kind === "no_speech");
  if (kind === "no_speech") $("reason").textContent = t("reason_" + (result.reason || "unknown"));
  show($("mixed-note"), kind === "mixed");
  renderTimeline(result);
  renderDetails(result);
  document.body.classList.add("has-result");
  show($("result"), true);
  show($("again"), true);
  // Feedback only for one voice heard clearly: a mixed clip under one label would teach the model wrong.
  current = kind === "female" || kind === "male" ? result : null;
  show($("feedback"), current !== null && Boolean(result.prediction_id));
  $("result").scrollIntoView({ block: "nearest" });
  armIdle();
}

function segmentKind(p) {
  if (p === null || p === undefined) return "none";
  return p >= 0.5 ? "female" : "male";
}

function renderTimeline(result) {
  const segments = (result.segments || []).slice().sort((a, b) => a.start - b.start);
  show($("timeline-block"), segments.length > 0 && result.label !== "no_speech");
  const total = Math.max(result.duration || 0, ...segments.map((s) => s.end || 0)) || 1;
  const bars = [];
  const items = [];
  // Windows overlap: each is drawn from its start to the next one's start.
  segments.forEach((segment, i) => {
    const until = i + 1 < segments.length ? segments[i + 1].start : segment.end;
    const kind = segmentKind(segment.p_female);
    const bar = document.createElement("div");
    bar.className = "seg " + kind;
    bar.style.left = (100 * segment.start / total) + "%";
    bar.style.width = Math.max(0.5, 100 * (until - segment.start) / total) + "%";
    const text = t("segment", { start: seconds(segment.start), end: seconds(segment.end),
                                label: kind === "none" ? t("too_little_speech") : t("label_" + kind) });
    bar.title = text;
    bars.push(bar);
    const item = document.createElement("li");
    item.textContent = text;
    items.push(item);
  });
  $("timeline").replaceChildren(...bars);
  $("segments").replaceChildren(...items);
}

async function sendFeedback(label) {
  if (!current || !$("consent").checked) return;
  const answered = current;
  setAnswersEnabled(false);
  show($("feedback-error"), false);
  try {
    const answer = await call("feedback", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prediction_id: answered.prediction_id, correct_label: label, consent: true }),
    });
    if (answered !== current) return;
    show($("answers"), false);
    $("saved").textContent = t("feedback_saved") + (answer && answer.retrain_started ? " " + t("retrain_started") : "");
    show($("saved"), true);
  } catch (error) {
    if (answered !== current) return;
    showError(errorText(error), $("feedback-error"));
    setAnswersEnabled($("consent").checked);
  }
  refreshOperator();
}

function showCountdown(left) {
  $("countdown-text").textContent = t("seconds_left", { seconds: Math.ceil(left) });
  $("countdown").value = maxRecordSeconds - left;
}

function showRecording(on) {
  $("record").classList.toggle("on", on);
  $("record").setAttribute("aria-pressed", String(on));
  $("record-text").textContent = t(on ? "stop" : "record");
  if (!on) $("countdown-text").textContent = "";
  show($("countdown"), on);
}

async function toggleRecording() {
  if (recorder.recording) {
    recorder.stop();
    return;
  }
  if (starting) return;
  clearResult();
  if (!canRecord()) {
    showError(t(window.isSecureContext ? "error_mic_unavailable" : "error_mic_insecure"));
    return;
  }
  starting = true;
  try {
    await recorder.start();
    showRecording(true);
  } catch (error) {
    showError(t("error_mic_unavailable"));
  } finally {
    starting = false;
  }
}

function chooseFile(file) {
  if (file) analyse(file, file.name);
}

async function loadModels() {
  const select = $("model");
  try {
    const answer = await call("models");
    // The list itself, or {loaded, models: [...]} from servers before the model parameter.
    const models = Array.isArray(answer) ? answer : answer.models || [];
    const options = models.map((model) => {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.default ? t("model_default", { name: model.name }) : model.name;
      return option;
    });
    select.replaceChildren(...options);
    const chosen = models.find((m) => m.default) || models.find((m) => m.loaded) || models[0];
    defaultModel = chosen ? chosen.name : "";
    select.value = defaultModel;
    show($("model-choice"), models.length > 0);
  } catch (error) {
    show($("model-choice"), false);
  }
}

async function loadLimits() {
  try {
    const health = await call("health");
    if (typeof health.max_upload_mb === "number") maxUploadBytes = health.max_upload_mb * 1024 * 1024;
  } catch (error) { /* the server checks the size anyway */ }
}

// Kiosk: after a while without input, back to the start (and to the start address's language).
function armIdle() {
  clearTimeout(idleTimer);
  if (view === "kiosk" && idleSeconds > 0) idleTimer = setTimeout(resetIdle, idleSeconds * 1000);
}

function resetIdle() {
  if (recorder.recording || pending > 0) { // the recording's own limit ends it; its answer re-arms the timer
    armIdle();
    return;
  }
  const start = sessionStorage.getItem("gvd-kiosk-start");
  if (start && start !== location.href) {
    location.replace(start);
    return;
  }
  clearResult();
  $("model").value = defaultModel;
  window.scrollTo(0, 0);
  armIdle();
}

function markLanguage() {
  for (const link of document.querySelectorAll(".languages a")) {
    if (link.dataset.lang === document.documentElement.lang) link.setAttribute("aria-current", "true");
  }
}

async function main() {
  // The address the kiosk was started with: where the idle reset returns (its language included).
  if (view === "kiosk" && !sessionStorage.getItem("gvd-kiosk-start")) {
    sessionStorage.setItem("gvd-kiosk-start", location.href);
  }
  markLanguage();
  $("countdown").max = maxRecordSeconds;
  await loadStrings();
  $("record-hint").textContent = t("record_hint", { seconds: maxRecordSeconds });
  $("record").addEventListener("click", toggleRecording);
  $("choose").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (event) => { chooseFile(event.target.files[0]); event.target.value = ""; });
  $("consent").addEventListener("change", () => setAnswersEnabled($("consent").checked && current !== null));
  for (const button of document.querySelectorAll("#answers button")) {
    button.addEventListener("click", () => sendFeedback(button.dataset.label));
  }
  $("again").addEventListener("click", () => { clearResult(); $("record").focus(); });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => { event.preventDefault(); chooseFile(event.dataTransfer.files[0]); });
  for (const type of ["pointerdown", "keydown", "input", "wheel", "touchstart"]) {
    window.addEventListener(type, armIdle, { capture: true, passive: true });
  }
  await Promise.all([loadModels(), loadLimits(), refreshOperator()]);
  armIdle();
  document.body.dataset.ready = "true"; // for tests and monitoring: the page is wired up
}

main();
