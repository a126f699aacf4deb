// The console shell: log in with an API key, route between views (#/name?params), poll for changes.

import { ApiError, forgetKey, get, storeKey, storedKey } from "./api.js";
import { badge, clear, h } from "./dom.js";
import { traceView } from "./trace.js";
import { anchorsView, emissionsView, enterprisesView, recordsView, sitesView } from "./views.js";

const POLL_MS = 3000;
const ROUTES = {
  enterprises: { title: "Enterprises", render: () => enterprisesView() },
  sites: { title: "Sites & devices", render: () => sitesView() },
  emissions: { title: "Emissions", render: (p) => emissionsView(p, navigate) },
  records: { title: "Records", render: (p) => recordsView(p, navigate) },
  anchors: { title: "Anchors", render: () => anchorsView() },
  trace: { title: "Trace", render: (p) => traceView(p), hidden: true, live: false },
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const live = document.getElementById("live");
let pulse = null;
let pollTimer = null;
let rendering = 0;

function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const name = ROUTES[path] ? path : "enterprises";
  return { name, params: Object.fromEntries(new URLSearchParams(search || "")) };
}

export function navigate(name, params = {}) {
  const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const search = new URLSearchParams(clean).toString();
  const target = `#/${name}${search ? `?${search}` : ""}`;
  if (location.hash === target) render();
  else location.hash = target;
}

function showError(err) {
  if (err instanceof ApiError && err.status === 403) {
    return h("div", { class: "notice", id: "forbidden" },
      h("strong", {}, "Not visible to this key. "), "The API refused this view for your role (HTTP 403).");
  }
  return h("div", { class: "notice notice-bad" }, h("strong", {}, "Could not load: "), err.message || String(err));
}

async function render() {
  if (!storedKey()) return showLogin();
  const { name, params } = parseHash();
  for (const link of nav.querySelectorAll("a")) link.classList.toggle("active", link.dataset.route === name);
  const ticket = ++rendering;
  main.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await ROUTES[name].render(params);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return logout("That key is not valid (any more).");
    content = showError(err);
  }
  if (ticket !== rendering) return; // a newer render started meanwhile
  clear(main).append(content);
  main.setAttribute("aria-busy", "false");
  main.dataset.view = name;
}

function showLogin(message = "") {
  stopPolling();
  document.body.classList.add("logged-out");
  clear(who);
  clear(main).append(loginForm(message));
  main.dataset.view = "login";
}

function loginForm(message) {
  const input = h("input", { type: "password", name: "key", id: "api-key", autocomplete: "off", required: true,
    placeholder: "ct_…", size: 70 });
  const form = h("form", { id: "login", class: "card login" },
    h("h2", {}, "Log in"),
    h("p", { class: "muted" }, "Paste your CarbonTrace API key. It stays in this browser tab only (sessionStorage) " +
      "and what you see is exactly what that key's role may read."),
    h("label", {}, "API key ", input),
    h("button", { type: "submit" }, "Log in"),
    message ? h("p", { class: "notice notice-bad", id: "login-error" }, message) : null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    storeKey(input.value.trim());
    try {
      await start();
    } catch (err) {
      forgetKey();
      showLogin(err instanceof ApiError && err.status === 401 ? "That key was not accepted." : String(err.message || err));
    }
  });
  return form;
}

async function start() {
  const me = await get("/console/me");
  document.body.classList.remove("logged-out");
  const scope = me.enterprise_id || me.platform_id || me.gateway_id || "all tenants";
  clear(who).append(badge(me.role, "role"), h("span", { class: "mono", id: "scope" }, ` ${scope} `),
    h("button", { type: "button", id: "logout", onclick: () => logout() }, "Log out"));
  pulse = null;
  startPolling();
  await render();
}

function logout(message = "") {
  forgetKey();
  showLogin(message);
}

// ---- live updates: poll a cheap change marker; when it moves, re-read the view on screen -------------------

function startPolling() {
  stopPolling();
  const tick = async () => {
    try {
      const next = await get("/console/pulse");
      const changed = pulse !== null && JSON.stringify(next) !== JSON.stringify(pulse);
      pulse = next;
      live.textContent = `● live · ${next.batches} batches · ${next.anchored}/${next.checkpoints} checkpoints anchored`;
      live.className = "live-ok";
      const { name } = parseHash();
      const editing = main.contains(document.activeElement) && document.activeElement.matches("input, select");
      if (changed && ROUTES[name].live !== false && !editing) {
        live.dataset.updated = String(Date.now());
        await render();
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return logout("That key is not valid (any more).");
      live.textContent = "○ offline — retrying";
      live.className = "live-bad";
    }
    pollTimer = setTimeout(tick, POLL_MS);
  };
  pollTimer = setTimeout(tick, 0);
}

function stopPolling() {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
  live.textContent = "";
}

for (const [name, route] of Object.entries(ROUTES)) {
  if (!route.hidden) nav.append(h("a", { href: `#/${name}`, "data-route": name }, route.title));
}
window.addEventListener("hashchange", () => render());
if (storedKey()) start().catch(() => logout("That key is not valid (any more)."));
else showLogin();
