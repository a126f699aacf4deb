// The API with the key a person logged in with. The page decides nothing about access: whatever the key's
// role may read, the API returns; anything else comes back 401/403 and is shown as such.

const KEY = "carbontrace.console.key";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

async function request(path, params = {}) {
  const key = storedKey();
  const response = await fetch(`/api/v1${path}${query(params)}`, {
    headers: key ? { Authorization: `Bearer ${key}` } : {},
  });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : body.error || JSON.stringify(body.detail);
    } catch (_) {
      /* not JSON */
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function get(path, params = {}) {
  return (await request(path, params)).json();
}

export async function getBlob(path, params = {}) {
  return (await request(path, params)).blob();
}
