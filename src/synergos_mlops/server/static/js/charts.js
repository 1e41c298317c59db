// The chart helpers every page shares: colours, sizes, states, tooltips, one ResizeObserver.
import { h } from "./dom.js";
import { fmtNum, fmtTicks } from "./format.js";
import { state } from "./state.js";

export function color(i) {
  return "hsl(" + Math.round((i * 137.508 + 200) % 360) + ", 62%, " + (i % 2 ? 52 : 42) + "%)";
}
export const GLOBAL = "global";

// ---------- axes: the one place that decides ticks and margins ----------
// Rounds, epochs and trials are counted: their axis only ever has whole-number ticks.
const WHOLE = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7];
const GRID = { stroke: "#eef1f5" };
// The value axis is as wide as its widest label, so "79165.5" is never cut at the left.
function valueAxisSize(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size;
  let size = axis.ticks.size + axis.gap;
  const longest = (values || []).reduce((a, v) => (v && String(v).length > a.length ? String(v) : a), "");
  if (longest) { u.ctx.font = axis.font[0]; size += u.ctx.measureText(longest).width / devicePixelRatio; }
  return Math.max(40, Math.ceil(size) + 4);
}
// uPlot's axes for a chart: x labelled (counted: whole-number ticks), values written by format.js.
export function chartAxes(xLabel, counted) {
  const x = { label: xLabel, labelSize: 18, size: 34, stroke: "#6b7685", grid: GRID, values: (u, splits) => fmtTicks(splits) };
  if (counted) Object.assign(x, { incrs: WHOLE, values: (u, splits) => splits.map((v) => String(Math.round(v))) });
  return [x, { size: valueAxisSize, stroke: "#6b7685", grid: GRID, values: (u, splits) => fmtTicks(splits) }];
}
// The x scale; one position alone still gets room around it (a counted axis: ±1).
export function xScale(counted, range) {
  return { time: false, range: (u, mn, mx) => {
    const [lo, hi] = range ? range(u, mn, mx) : [mn, mx];
    if (lo !== hi) return [lo, hi];
    return counted ? [lo - 1, hi + 1] : [lo - 0.5, hi + 0.5];
  } };
}
// Points of a line: drawn where the line has few positions, and always for a lone point (a dot).
export const linePoints = (count, few) => ({ show: count < 2 || few, size: count < 2 ? 7 : 5 });
// Every chart says what it is doing: "loading…", drawn, empty or the request's error.
// document.body.dataset.charts counts the charts of the view, .chartsDrawn those drawn,
// .chartsSettled those drawn, empty or failed; "synergos:charts-drawn" fires once all settled.
export function setChartState(el, kind, text) {
  if (el.dataset.state === kind && kind !== "empty") return;
  const settled = (k) => k === "drawn" || k === "empty" || k === "error";
  const before = el.dataset.state;
  el.dataset.state = kind;
  const note = el.querySelector(".chart-state");
  note.className = "chart-state " + kind;
  note.textContent = text || "";
  note.hidden = !text;
  if (el.dataset.chartView !== String(state.chartView)) return;
  const body = document.body.dataset;
  if (kind === "drawn" && before !== "drawn") body.chartsDrawn = String(+body.chartsDrawn + 1);
  if (settled(kind) && !settled(before)) {
    body.chartsSettled = String(+body.chartsSettled + 1);
    if (body.chartsSettled === body.charts) {
      body.chartsDrawnMs = String(Math.round(performance.now()));  // since navigation began
      document.dispatchEvent(new CustomEvent("synergos:charts-drawn", { detail: { charts: +body.charts } }));
    }
  }
}
export function emptyNotice(el, lines, names) {
  const count = (n) => (lines[n] ? lines[n].steps.length : 0);
  const any = names.some((n) => count(n) > 0);
  const shown = names.some((n) => !state.hidden.has(n) && count(n) > 0);
  const text = !any ? "no points logged for this key"
    : !shown ? "no points logged for this key by the lines shown" : "";
  const note = el.querySelector(".chart-state");
  if (el.dataset.state === "drawn" || el.dataset.state === "empty") {
    note.className = "chart-state " + (text ? "empty" : "");
    note.textContent = text;
    note.hidden = !text;
  }
  return text;
}

// One ResizeObserver for every chart: a chart follows its box's width.
export const resizer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = entry.target.__chart;
    const w = Math.floor(entry.contentRect.width);
    if (chart && w > 0 && Math.abs(w - chart.u.width) > 1) chart.u.setSize({ width: w, height: CHART_HEIGHT });
  }
});
export const CHART_HEIGHT = 240;

// The values under the cursor; each row's exact value is its title (and data-value). A
// decimated chart (two points per pixel column) says that zooming shows every point.
export function showTip(u, tip, axisName, decimated) {
  const idx = u.cursor.idx;
  if (idx === null || idx === undefined || u.cursor.left < 0) { tip.style.display = "none"; return; }
  const rows = [];
  for (let i = 1; i < u.series.length; i++) {
    const v = u.data[i][idx];
    if (!u.series[i].show || v === null || v === undefined) continue;
    rows.push([u.series[i].label, v, u.series[i].stroke()]);
  }
  if (!rows.length) { tip.style.display = "none"; return; }
  rows.sort((a, b) => b[1] - a[1]);
  const shown = rows.slice(0, 12);
  const more = rows.length - shown.length;
  tip.replaceChildren(...[
    h("div", { class: "muted", style: "color:#c9d6f5" }, axisName + " " + u.data[0][idx]),
    decimated ? h("div", { class: "muted", style: "color:#c9d6f5" }, "lowest and highest per pixel: zoom for every point") : null,
    ...shown.map(([label, v, c]) => h("div", { class: "row" },
      h("span", { class: "sw", style: "background:" + c }), label, h("b", { title: String(v), dataset: { value: String(v) } }, fmtNum(v)))),
    more > 0 ? h("div", { class: "muted", style: "color:#c9d6f5" }, "+ " + more + " more") : null,
  ].filter(Boolean));
  tip.style.display = "block";
  const left = u.cursor.left + 14, width = tip.offsetWidth;
  tip.style.left = (left + width > u.over.clientWidth ? u.cursor.left - width - 14 : left) + "px";
  tip.style.top = Math.max(0, Math.min(u.cursor.top - 10, u.over.clientHeight - tip.offsetHeight)) + "px";
}

export function chartBox(id, title) {
  return h("div", { class: "chart", id, dataset: { chartView: String(state.chartView), state: "loading" } },
    h("h3", {}, title), h("div", { class: "plot" }),
    h("p", { class: "chart-state loading", role: "status" }, "loading…"));
}
