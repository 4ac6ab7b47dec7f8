// The REST client: the session's tokens (sessionStorage: gone with the tab), JSON calls,
// and one refresh on a 401 before sending the user back to the login view.

const STORE = "attune.session";

/** The tokens of this tab's session, or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE));
  } catch {
    return null;
  }
}

function save(tokens) {
  sessionStorage.setItem(STORE, JSON.stringify({ access: tokens.access_token, refresh: tokens.refresh_token }));
}

export function forget() {
  sessionStorage.removeItem(STORE);
}

/** An error answer of the API: `status`, `code` and the server's message. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error ? body.error : {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || String(status);
  }
}

/** Called when the session is gone for good (refresh refused): the app shows the login view. */
let onLoggedOut = () => {};
export function whenLoggedOut(fn) {
  onLoggedOut = fn;
}

export async function login(loginName, password) {
  const tokens = await send("POST", "/auth/login", { login: loginName, password }, null);
  save(tokens);
}

// One refresh at a time: the refresh token rotates, so a second concurrent refresh with the
// old one would be refused (and log the user out).
let refreshing = null;

/** Exchanges the refresh token for a new pair; false when the session cannot be renewed. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const s = session();
      if (!s) return false;
      try {
        save(await send("POST", "/auth/refresh", { refresh_token: s.refresh }, null));
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

export async function logout() {
  forget();
  onLoggedOut();
}

/** `method path` with the session's token; a 401 refreshes once and retries. */
export async function api(method, path, body) {
  const s = session();
  try {
    return await send(method, path, body, s && s.access);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    if (await refresh()) return send(method, path, body, session().access);
    forget();
    onLoggedOut();
    throw e;
  }
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** A query string of the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
