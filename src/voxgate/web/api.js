// Talking to voxgate: the API key, requests, and its error model
// ({"error": {"code", "message", "hint"}}, docs/errors.md).

const KEY_STORAGE = "voxgate.apiKey";

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage blocked (private mode, policy): work without a key
  }
}

export function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing to do: the key then lasts for this page only
  }
  sessionKey = value;
}

let sessionKey = null;

function currentKey() {
  return sessionKey ?? apiKey();
}

/** Request headers, with Authorization when an API key is set. */
export function headers(extra = {}) {
  const out = { ...extra };
  const key = currentKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

/** URL of an API path, relative to the page (works behind a path prefix). */
export function url(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI).href;
}

export class ApiError extends Error {
  constructor({ status = 0, code, message, hint = null, requestId = null }) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.hint = hint;
    this.requestId = requestId;
  }
}

/** The ApiError a failed response describes (its JSON error body, or its status). */
export async function errorFrom(response) {
  const requestId = response.headers.get("x-request-id");
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const error = body && body.error;
  if (error && typeof error === "object") {
    return new ApiError({
      status: response.status,
      code: error.code || error.type || `http_${response.status}`,
      message: error.message || response.statusText,
      hint: error.hint || null,
      requestId,
    });
  }
  return new ApiError({
    status: response.status,
    code: `http_${response.status}`,
    message: `${response.status} ${response.statusText}`.trim(),
    hint: "The answer was not voxgate's error body; is a proxy in between?",
    requestId,
  });
}

/** An ApiError for anything thrown while talking to the server. */
export function asApiError(err) {
  if (err instanceof ApiError) return err;
  if (err && err.name === "AbortError") {
    return new ApiError({ code: "cancelled", message: "Stopped." });
  }
  return new ApiError({
    code: "network_error",
    message: (err && err.message) || String(err),
    hint: "Is the server running and reachable? The connection failed or was cut.",
  });
}

/**
 * fetch() with the API key; resolves to the Response when it is 2xx, throws
 * an ApiError otherwise. `json` is sent as a JSON body, `form` as multipart.
 */
export async function request(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (err) {
    throw asApiError(err);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}
