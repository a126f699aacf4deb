// Tiny DOM helpers. Text always goes in as text nodes (never innerHTML), so API data cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    // Through the CSSOM, not a style attribute: the console's CSP (cloud/security_headers.py) blocks those.
    else if (name === "style") el.style.cssText = String(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// Unix seconds as "2026-11-26 03:52:41Z" (UTC: devices, gateways and the cloud all count in UTC).
export function utc(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function ago(seconds, now = Date.now() / 1000) {
  if (seconds === null || seconds === undefined) return "never";
  const d = Math.max(0, Math.round(now - seconds));
  if (d < 90) return `${d} s ago`;
  if (d < 5400) return `${Math.round(d / 60)} min ago`;
  if (d < 172800) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} days ago`;
}

export function short(hex, n = 10) {
  if (!hex) return "—";
  return hex.length > n + 2 ? `${hex.slice(0, n)}…` : hex;
}

// An emissions figure of the API (as a statement reports it) → "0.0000123456 tCO2 (location-based)":
// the API's exact tonnes text, never re-derived in floating point.
export function tonnesText(figure) {
  return `${figure.t_co2} ${figure.unit} (${figure.method})`;
}

export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

export function ranges(list) {
  if (!list || list.length === 0) return "none";
  return list.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}–${hi}`)).join(", ");
}
