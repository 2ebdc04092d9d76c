// The page's only data source: the proxy's JSON API. The API key (when the proxy wants one) is
// kept in localStorage and sent as a header, never put into a URL the page requests itself.

const KEY_NAME = "nextpvr-proxy.api-key";
const ADMIN_NAME = "nextpvr-proxy.admin-key";

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_NAME, key);
  else localStorage.removeItem(KEY_NAME);
}

export function adminKey() {
  return localStorage.getItem(ADMIN_NAME) || "";
}

export function setAdminKey(key) {
  if (key) localStorage.setItem(ADMIN_NAME, key);
  else localStorage.removeItem(ADMIN_NAME);
}

export function keyHeaders(admin = false) {
  const key = admin ? adminKey() || apiKey() : apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.message) message = body.message;
  } catch {
    if (text.trim()) message = text.trim().split("\n")[0];
  }
  const retry = parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, message, Number.isFinite(retry) ? retry : null);
}

// listeners told when the proxy refused the key (the page asks for it again)
const unauthorized = new Set();
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

export async function request(path, { method = "GET", body, admin = false } = {}) {
  const init = { method, headers: { ...keyHeaders(admin), Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !admin) unauthorized.forEach((fn) => fn(error));
    throw error;
  }
  return response.json();
}

export const get = (path) => request(path);

// Ask for a stream's playlist before the player does: a refusal (all tuners busy, channel gone)
// then arrives as an HTTP status and a Retry-After the page can explain, which a <video> element
// would only report as "network error". The proxy starts the transcode here, so the player's own
// request that follows is answered from memory.
export async function preflight(url) {
  const response = await fetch(url, { headers: keyHeaders() });
  if (!response.ok) throw await errorOf(response);
  await response.text();
}
