// The console's list views. Each takes the route's parameters, reads the API and returns DOM.

import { get } from "./api.js";
import { chartLegend, emissionsChart } from "./chart.js";
import { ago, badge, h, ranges, short, tonnesText, utc } from "./dom.js";

export const RECORD_TYPES = ["co2", "temperature", "humidity", "energy", "emissions", "aggregates"];
export const READING_TYPES = ["co2", "temperature", "humidity", "energy"];

// "2023-11-14T22:13" typed in a datetime-local input, read as UTC, to unix seconds (and back).
export function fromInput(value) {
  if (!value) return null;
  const ms = Date.parse(`${value.length === 16 ? `${value}:00` : value}Z`);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

export function toInput(seconds) {
  if (seconds === null || seconds === undefined || seconds === "") return "";
  return new Date(Number(seconds) * 1000).toISOString().slice(0, 16);
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "nothing here"))));
}

function periodInputs(params) {
  return [
    h("label", {}, "From (UTC) ", h("input", { type: "datetime-local", name: "from", value: toInput(params.from) })),
    h("label", {}, "To (UTC) ", h("input", { type: "datetime-local", name: "to", value: toInput(params.to) })),
  ];
}

function readPeriod(form) {
  const data = new FormData(form);
  return { from: fromInput(data.get("from")), to: fromInput(data.get("to")) };
}

// ---- enterprises ----------------------------------------------------------------------------------------

export async function enterprisesView() {
  const rows = await get("/console/enterprises");
  return h("section", { id: "view-enterprises" },
    h("h2", {}, "Enterprises and platform bindings"),
    table(["Enterprise", "Name", "Chain account", "Sites", "Platform bindings"], rows.map((e) =>
      h("tr", { "data-enterprise": e.enterprise_id },
        h("td", { class: "mono" }, e.enterprise_id),
        h("td", {}, e.name),
        h("td", { class: "mono", title: e.chain_account }, short(e.chain_account, 12)),
        h("td", {}, e.sites),
        h("td", {}, e.bindings.length
          ? e.bindings.map((b) => h("div", { class: "binding" }, `${b.platform_name} (${b.platform_id}) `,
            badge(b.state, b.state === "bound" ? "ok" : b.state === "requested" ? "warn" : "muted")))
          : h("span", { class: "muted" }, "none"))))));
}

// ---- sites and devices ----------------------------------------------------------------------------------

export async function sitesView() {
  const sites = await get("/console/sites");
  const section = h("section", { id: "view-sites" }, h("h2", {}, "Sites, gateways and devices"));
  if (sites.length === 0) section.append(h("p", { class: "muted" }, "No sites."));
  for (const site of sites) {
    section.append(h("article", { class: "card", "data-site": site.site_id },
      h("h3", {}, `${site.name} `, h("span", { class: "mono muted" }, site.site_id)),
      h("p", { class: "muted" }, `Enterprise ${site.enterprise_id} · emission factor ${site.factor.id}` +
        (site.factor.kg_per_kwh_e4 !== null ? ` (${site.factor.kg_per_kwh_e4 / 10000} kg/kWh, ${site.factor.source})` : "")),
      h("h4", {}, "Gateways"),
      table(["Gateway", "Batches", "Last batch", "Received", "Health report", "Unregistered senders rejected"],
        site.gateways.map((g) => h("tr", { "data-gateway": g.gateway_id },
          h("td", { class: "mono" }, g.gateway_id),
          h("td", {}, g.batches),
          h("td", {}, g.last_batch_seq ?? "—"),
          h("td", { title: utc(g.last_batch_at) }, ago(g.last_batch_at)),
          h("td", { title: utc(g.health_reported_at) }, g.health_reported_at ? ago(g.health_reported_at) : "none yet"),
          h("td", {}, g.unregistered_rejections)))),
      h("h4", {}, "Devices"),
      table(["Device", "Status", "Last seen", "Readings", "Last seq", "Sequence gaps (stored)", "Rejected at gateway",
        "Gateway still missing"],
      site.devices.map((d) => h("tr", { "data-device": d.device_id },
        h("td", { class: "mono" }, d.device_id),
        h("td", {}, badge(d.status, d.status === "active" ? "ok" : "bad")),
        h("td", { title: utc(d.last_seen) }, d.last_seen ? utc(d.last_seen) : "never"),
        h("td", {}, d.readings),
        h("td", {}, d.last_seq ?? "—"),
        h("td", { class: d.missing ? "warn-text" : "" }, d.missing ? `${ranges(d.gaps)} (${d.missing} missing)` : "none"),
        h("td", { class: d.rejected ? "bad-text" : "", "data-rejected": d.rejected ?? "" },
          d.rejected === null ? h("span", { class: "muted" }, "no report") :
            [String(d.rejected), d.rejected ? h("span", { class: "muted" }, ` (${Object.entries(d.rejections)
              .map(([r, n]) => `${r} ${n}`).join(", ")})`) : null]),
        h("td", {}, ranges(d.gateway_gaps)))))));
  }
  return section;
}

// ---- emissions ------------------------------------------------------------------------------------------

export async function emissionsView(params, navigate) {
  const series = await get("/console/emissions", {
    enterprise_id: params.enterprise, site_id: params.site, start: params.from, end: params.to,
  });
  let enterprises = [];
  try {
    enterprises = await get("/console/enterprises");
  } catch (_) {
    /* the filter then offers only what the series itself names */
  }
  const sites = [...new Set(series.points.map((p) => p.site_id))].sort();
  const form = h("form", { class: "filters", id: "emissions-filter" },
    h("label", {}, "Enterprise ", h("select", { name: "enterprise" },
      h("option", { value: "" }, "all in scope"),
      enterprises.map((e) => h("option", { value: e.enterprise_id, selected: e.enterprise_id === params.enterprise },
        `${e.name} (${e.enterprise_id})`)))),
    h("label", {}, "Site ", h("input", { name: "site", value: params.site || "", placeholder: "any", list: "site-list" })),
    h("datalist", { id: "site-list" }, sites.map((s) => h("option", { value: s }))),
    periodInputs(params),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    navigate("emissions", { enterprise: data.get("enterprise"), site: data.get("site"), ...readPeriod(form) });
  });
  const energy = series.points.reduce((sum, p) => sum + p.delta_wh, 0);
  return h("section", { id: "view-emissions" },
    h("h2", {}, "Emissions over time"),
    form,
    h("p", { class: "summary" }, `${series.points.length} windows · total `, h("strong", { id: "emissions-total" }, tonnesText(series.total)),
      series.market_based ? [" · ", h("strong", { id: "emissions-market-total" }, tonnesText(series.market_based))] : [],
      ` from ${energy} Wh`, series.truncated ? " (truncated: narrow the period)" : ""),
    series.withheld  // leaves trace withholds from this key are not summed (docs/access.md, "Withheld leaves")
      ? h("p", { id: "emissions-withheld" }, `${series.withheld} aggregate ${series.withheld === 1 ? "leaf" : "leaves"} `
        + `withheld from this key and not in the total: ${series.withheld_reason}.`)
      : null,
    h("div", { class: "chart-box" }, emissionsChart(series.points)),
    h("ul", { class: "legend" }, chartLegend(series.points).map(({ site, color }) =>
      h("li", {}, h("span", { class: "swatch", style: `background:${color}` }), site))),
    h("h3", {}, "Emission factors"),
    table(["Factor", "kg CO2 / kWh", "Region", "Year", "Source"], Object.values(series.factors).map((f) =>
      h("tr", { "data-factor": f.id },
        h("td", { class: "mono" }, f.id),
        h("td", {}, f.kg_per_kwh_e4 === null ? "unknown" : (f.kg_per_kwh_e4 / 10000).toFixed(4)),
        h("td", {}, f.region ?? "—"), h("td", {}, f.year ?? "—"), h("td", {}, f.source ?? "—")))));
}

// ---- records (locate) -----------------------------------------------------------------------------------

// ``enterprise``: the one the records were asked for; a platform's key reaches only a named enterprise it is
// bound to, so its trace link must name it too (docs/access.md).
export function traceParams(item, types, enterprise) {
  const wanted = types.length ? types : RECORD_TYPES;
  const scope = enterprise ? { enterprise } : {};
  if (item.kind === "reading") {
    const readingTypes = wanted.filter((t) => READING_TYPES.includes(t));
    return { kind: "reading", device: item.device_id, start: item.time[0], end: item.time[0] + 1,
      types: (readingTypes.length ? readingTypes : READING_TYPES).join(","), batch: item.batch_id, leaf: item.leaf_index,
      ...scope };
  }
  const aggregateType = wanted.includes("aggregates") ? "aggregates" : "emissions";
  return { kind: "aggregate", device: item.device_id, start: item.time[0], end: item.time[0] + 1,
    types: aggregateType, batch: item.batch_id, leaf: item.leaf_index, ...scope };
}

export async function recordsView(params, navigate) {
  const types = (params.types || "").split(",").filter((t) => RECORD_TYPES.includes(t));
  let enterprises = [];
  try {
    enterprises = await get("/console/enterprises");
  } catch (_) {
    /* a key that may list no enterprise (the public) filters by the other fields only */
  }
  const form = h("form", { class: "filters", id: "records-filter" },
    h("fieldset", {}, h("legend", {}, "Type"), RECORD_TYPES.map((t) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "types", value: t, checked: types.includes(t) }), t))),
    h("label", {}, "Enterprise ", h("select", { name: "enterprise" },
      h("option", { value: "" }, "all in scope"),
      enterprises.map((e) => h("option", { value: e.enterprise_id, selected: e.enterprise_id === params.enterprise },
        `${e.name} (${e.enterprise_id})`)))),
    periodInputs(params),
    h("label", {}, "Device ", h("input", { name: "device", value: params.device || "", placeholder: "any" })),
    h("label", {}, "Site ", h("input", { name: "site", value: params.site || "", placeholder: "any" })),
    h("button", { type: "submit" }, "Find"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    navigate("records", { types: data.getAll("types").join(","), enterprise: data.get("enterprise"),
      device: data.get("device"), site: data.get("site"), ...readPeriod(form) });
  });
  const answer = await get("/trace/locate", {
    types, start: params.from, end: params.to, enterprise_id: params.enterprise, device_id: params.device,
    site_id: params.site, limit: 200,
  });
  return h("section", { id: "view-records" },
    h("h2", {}, "Records"),
    form,
    h("p", { class: "summary", id: "records-count" }, `${answer.count} record${answer.count === 1 ? "" : "s"}`),
    table(["Kind", "Device", "Site", "Time (UTC)", "Batch", "Leaf", "Log index", "Anchor", ""],
      answer.items.map((item) => h("tr", { class: "record", "data-kind": item.kind, "data-batch": item.batch_id,
        "data-leaf": item.leaf_index },
      h("td", {}, item.kind),
      h("td", { class: "mono" }, item.device_id),
      h("td", { class: "mono" }, item.site_id),
      h("td", {}, item.time.length > 1 ? `${utc(item.time[0])} – ${utc(item.time[1]).slice(11)}` : utc(item.time[0])),
      h("td", { class: "mono" }, item.batch_id),
      h("td", {}, item.leaf_index),
      h("td", {}, item.log_index),
      h("td", {}, item.anchored ? badge(`checkpoint ${item.checkpoint_seq}`, "ok") : badge("pending", "warn")),
      h("td", {}, h("a", { class: "trace-link", href: `#/trace?${new URLSearchParams(traceParams(item, types, params.enterprise))}` },
        "Trace →"))))));
}

// ---- anchors and batches (live) -------------------------------------------------------------------------

export async function anchorsView() {
  const checkpoints = await get("/log/checkpoints", { limit: 1000 });
  let batches = null;
  try {
    batches = await get("/console/batches", { limit: 50 });
  } catch (err) {
    batches = err;
  }
  return h("section", { id: "view-anchors" },
    h("h2", {}, "Anchored checkpoints"),
    table(["Checkpoint", "Tree size", "Root", "Signed at", "State", "Transaction", "Block", "Gas"],
      checkpoints.slice().reverse().map((c) => h("tr", { class: "checkpoint", "data-seq": c.seq },
        h("td", {}, `#${c.seq}`),
        h("td", {}, c.tree_size),
        h("td", { class: "mono", title: c.root }, short(c.root, 16)),
        h("td", {}, utc(c.timestamp)),
        h("td", {}, c.anchored ? badge("anchored", "ok") : badge("pending", "warn")),
        h("td", { class: "mono", title: c.tx_hash || "" }, short(c.tx_hash, 18)),
        h("td", {}, c.block_number ?? "—"),
        h("td", {}, c.gas_used ?? "—")))),
    h("h2", {}, "Newest batches"),
    batches instanceof Error
      ? h("p", { class: "muted" }, `Batches are not visible to this key (${batches.message}).`)
      : table(["Batch", "Site", "Readings", "Window (UTC)", "Log index", "Received", "Anchor"],
        batches.map((b) => h("tr", { class: "batch", "data-batch": b.batch_id },
          h("td", { class: "mono" }, b.batch_id),
          h("td", { class: "mono" }, b.site_id),
          h("td", {}, b.readings),
          h("td", {}, `${utc(b.window[0])} – ${utc(b.window[1]).slice(11)}`),
          h("td", {}, b.log_index),
          h("td", { title: utc(b.received_at) }, ago(b.received_at)),
          h("td", {}, b.checkpoint_seq === null ? badge("pending", "warn")
            : h("span", {}, badge(`checkpoint ${b.checkpoint_seq}`, "ok"), " ",
              h("span", { class: "mono muted", title: b.tx_hash }, short(b.tx_hash, 12))))))));
}
