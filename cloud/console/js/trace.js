// The trace view: one reading or aggregate, its chain of evidence verified by the API step by step
// (GET /api/v1/trace/verify), each stage green or red, and its proof bundle to download.

import { get, getBlob } from "./api.js";
import { badge, h, short, utc } from "./dom.js";

// The evidence chain as a person reads it, and which verification steps (carbontrace/verify_bundle.py and
// the retrieval steps of cloud/trace.py) decide each stage.
export const STAGES = [
  { id: "record", title: "Stored record", steps: ["content_store", "sql_index", "decoded_view", "query_match"] },
  { id: "device", title: "Device signature", steps: ["device_key", "device_signature"] },
  { id: "batch", title: "Batch", steps: ["batch_inclusion"] },
  { id: "gateway", title: "Gateway", steps: ["gateway_signature"] },
  { id: "log", title: "Log", steps: ["log_inclusion"] },
  { id: "checkpoint", title: "Checkpoint", steps: ["checkpoint_signature", "consistency"] },
  { id: "chain", title: "Chain transaction", steps: ["chain_anchor"] },
];

export function stageState(stage, steps) {
  const mine = steps.filter((s) => stage.steps.includes(s.step));
  if (mine.some((s) => s.ok === false)) return "failed";
  if (mine.length === 0) return "unchecked";
  if (mine.every((s) => s.ok === true)) return "ok";
  if (mine.some((s) => s.ok === true)) return "ok";
  return mine.some((s) => /pending/.test(s.detail)) ? "pending" : "n/a";
}

const STATE_TEXT = { ok: "verified", failed: "FAILED", unchecked: "not checked", pending: "pending", "n/a": "not applicable" };

function traceQuery(params) {
  return {
    enterprise_id: params.enterprise,
    device_id: params.device,
    start: params.start,
    end: params.end,
    types: (params.types || "").split(",").filter(Boolean),
    limit: 50,
  };
}

// The record the link names (batch and leaf); a hand-made link without them takes the first match.
function pick(items, params) {
  if (!params.batch) return items[0];
  return items.find((i) => i.batch_id === params.batch && String(i.leaf_index) === String(params.leaf));
}

async function downloadBundle(params, button) {
  button.disabled = true;
  button.textContent = "Preparing…";
  try {
    const blob = await getBlob("/trace/bundle", traceQuery(params));
    const url = URL.createObjectURL(blob);
    const name = `carbontrace-bundle-${params.device}-${params.start}.json`.replace(/[^A-Za-z0-9._-]/g, "_");
    const link = h("a", { href: url, download: name, style: "display:none" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    button.textContent = "Download proof bundle";
  } catch (err) {
    button.textContent = `Download failed (${err.message})`;
  } finally {
    button.disabled = false;
  }
}

export async function traceView(params) {
  const answer = await get("/trace/verify", traceQuery(params));
  const section = h("section", { id: "view-trace" }, h("h2", {}, "Trace"));
  const item = pick(answer.items, params);
  if (!item) {
    section.append(h("p", { class: "muted" }, "Nothing found for this record (or it is outside this key's scope)."));
    return section;
  }
  let checkpoint = null;
  if (item.checkpoint_seq !== null) {
    const list = await get("/log/checkpoints", { after: item.checkpoint_seq - 1, limit: 1 });
    checkpoint = list.find((c) => c.seq === item.checkpoint_seq) || null;
  }
  const overall = item.status === "valid" ? "ok" : item.status === "pending" ? "warn" : "bad";
  const button = h("button", { type: "button", id: "download-bundle" }, "Download proof bundle");
  button.addEventListener("click", () => downloadBundle(params, button));
  section.append(
    h("div", { class: "trace-head" },
      h("div", {},
        h("p", {}, h("strong", {}, item.kind === "reading" ? "Reading" : "Aggregate window"), " of device ",
          h("span", { class: "mono" }, item.device_id), " at site ", h("span", { class: "mono" }, item.site_id)),
        h("p", { class: "muted" }, item.time.length > 1 ? `window ${utc(item.time[0])} – ${utc(item.time[1])}` : utc(item.time[0]),
          ` · batch ${item.batch_id}, leaf ${item.leaf_index} · log index ${item.log_index}`)),
      h("div", { class: "trace-status" }, badge(item.status, overall), item.failed_step
        ? h("span", { id: "failed-step" }, ` failed at ${item.failed_step}`) : null, " ", button)),
  );
  if (item.withheld) {  // its format would show a field this key may not see (docs/access.md, "Withheld leaves")
    section.append(h("p", { id: "withheld" }, `Withheld from this key: ${item.withheld}.`));
    return section;
  }
  const chain = h("ol", { class: "evidence", id: "evidence" });
  for (const stage of STAGES) {
    const state = stageState(stage, item.steps);
    const steps = item.steps.filter((s) => stage.steps.includes(s.step));
    chain.append(h("li", { class: `stage stage-${state}`, "data-stage": stage.id, "data-state": state },
      h("div", { class: "stage-title" }, h("span", { class: "dot" }), stage.title,
        h("span", { class: "stage-state" }, STATE_TEXT[state])),
      h("ul", { class: "steps" }, steps.map((s) => h("li", { "data-step": s.step,
        class: s.ok === true ? "step-ok" : s.ok === false ? "step-failed" : "step-skipped" },
      h("span", { class: "mono" }, s.step), ": ", s.detail))),
      stage.id === "chain" && checkpoint && checkpoint.tx_hash
        ? h("p", { class: "mono small", title: checkpoint.tx_hash },
          `tx ${short(checkpoint.tx_hash, 22)} · block ${checkpoint.block_number ?? "—"} · checkpoint #${checkpoint.seq}`)
        : null));
  }
  section.append(chain);
  if (item.view) {
    section.append(h("h3", {}, "Decoded record (as signed)"), h("table", { class: "kv" }, h("tbody", {},
      Object.entries(item.view).map(([k, v]) => h("tr", {}, h("th", {}, k),
        h("td", { class: "mono" }, typeof v === "object" ? JSON.stringify(v) : String(v)))))));
  }
  return section;
}
