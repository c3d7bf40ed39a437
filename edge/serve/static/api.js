// Calls to the gvd API. Errors carry the server's machine word, translated by the page when it knows it.
import { has, t } from "./i18n.js";

export class ApiError extends Error {
  constructor(word, message, status) {
    super(message || word);
    this.word = word;
    this.status = status;
  }
}

// When a proxy or the browser answers without a JSON body, the status still says what happened.
const WORD_FOR_STATUS = { 413: "upload_too_large", 415: "unsupported_format", 429: "busy", 503: "busy" };

export async function call(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError("network", "", 0);
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const word = body && typeof body.error === "string" ? body.error : WORD_FOR_STATUS[response.status] || "";
    const message = body && (typeof body.message === "string" ? body.message
      : typeof body.detail === "string" ? body.detail : "");
    throw new ApiError(word, message || response.statusText, response.status);
  }
  return body;
}

// The translated sentence for an error word, else the server's own sentence, else a generic one.
export function errorText(error) {
  if (error instanceof ApiError && error.word && has("error_" + error.word)) return t("error_" + error.word);
  if (error && error.message) return error.message;
  return t("error_unexpected");
}
