// Emissions over time as an SVG line chart, drawn here (no chart library): one line per site, a point per
// aggregate window, exact figures in each point's tooltip.

import { svg, tonnesText, utc } from "./dom.js";

const PALETTE = ["#1b7f5b", "#2f6db5", "#c0612b", "#8a4fb3", "#b8912a", "#c43d5a", "#3a8f9a"];

// A "nice" step (1, 2 or 5 × 10^k) so that about `count` ticks cover [0, max].
export function niceStep(max, count = 5) {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function seriesBySite(points) {
  const bySite = new Map();
  for (const p of points) {
    if (!bySite.has(p.site_id)) bySite.set(p.site_id, []);
    bySite.get(p.site_id).push(p);
  }
  for (const list of bySite.values()) list.sort((a, b) => a.window[0] - b.window[0]);
  return bySite;
}

export function emissionsChart(points, { width = 860, height = 300 } = {}) {
  const margin = { top: 16, right: 20, bottom: 42, left: 72 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    role: "img",
    "aria-label": "Emissions per aggregate window, tCO2 (location-based)",
    class: "chart",
  });
  if (points.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" },
      "no emissions in this period"));
    return root;
  }
  const mid = (p) => (p.window[0] + p.window[1]) / 2;
  let t0 = Math.min(...points.map((p) => p.window[0]));
  let t1 = Math.max(...points.map((p) => p.window[1]));
  if (t1 === t0) t1 = t0 + 1;
  // the plot's scale only: every figure shown as text is the API's exact tCO2
  const tonnes = (p) => Number(p.emissions.t_co2);
  const yMax = Math.max(...points.map(tonnes));
  const step = niceStep(yMax);
  const top = Math.max(step, Math.ceil(yMax / step) * step);
  const x = (t) => margin.left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (g) => margin.top + plotH - (g / top) * plotH;

  const axes = svg("g", { class: "axes" });
  for (let g = 0; g <= top + step / 2; g += step) {
    axes.append(
      svg("line", { x1: margin.left, x2: margin.left + plotW, y1: y(g), y2: y(g), class: "grid" }),
      svg("text", { x: margin.left - 8, y: y(g) + 4, "text-anchor": "end" }, `${+g.toPrecision(6)} t`),
    );
  }
  const ticks = 4;
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) * i) / ticks;
    const label = utc(Math.round(t)).slice(5, 16);
    axes.append(
      svg("line", { x1: x(t), x2: x(t), y1: margin.top + plotH, y2: margin.top + plotH + 5, class: "tick" }),
      svg("text", { x: x(t), y: margin.top + plotH + 20, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
        label),
    );
  }
  axes.append(
    svg("line", { x1: margin.left, x2: margin.left + plotW, y1: margin.top + plotH, y2: margin.top + plotH, class: "axis" }),
    svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH, class: "axis" }),
    svg("text", { x: margin.left + plotW / 2, y: height - 4, "text-anchor": "middle", class: "axis-title" }, "window (UTC)"),
  );
  root.append(axes);

  let index = 0;
  for (const [site, list] of seriesBySite(points)) {
    const color = PALETTE[index++ % PALETTE.length];
    const group = svg("g", { class: "series", "data-site": site });
    if (list.length > 1) {
      const d = list.map((p, i) => `${i ? "L" : "M"}${x(mid(p)).toFixed(1)},${y(tonnes(p)).toFixed(1)}`).join(" ");
      group.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    }
    for (const p of list) {
      group.append(
        svg("circle", { cx: x(mid(p)), cy: y(tonnes(p)), r: 3.5, fill: color, class: "point" },
          svg("title", {}, `${site} ${utc(p.window[0])} – ${utc(p.window[1])}: ${tonnesText(p.emissions)}, ` +
            `${p.delta_wh} Wh, factor ${p.factor_id}`)),
      );
    }
    root.append(group);
  }
  return root;
}

export function chartLegend(points) {
  const items = [];
  let index = 0;
  for (const site of seriesBySite(points).keys()) {
    items.push({ site, color: PALETTE[index++ % PALETTE.length] });
  }
  return items;
}
