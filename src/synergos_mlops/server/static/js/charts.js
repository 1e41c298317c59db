// The chart helpers every page shares: colours, sizes, states, tooltips, one ResizeObserver.
import { h } from "./dom.js";
import { fmtNum } from "./format.js";
import { state } from "./state.js";

export function color(i) {
  return "hsl(" + Math.round((i * 137.508 + 200) % 360) + ", 62%, " + (i % 2 ? 52 : 42) + "%)";
}
export const GLOBAL = "global";
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

export function showTip(u, tip, axisName) {
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
    ...shown.map(([label, v, c]) => h("div", { class: "row" },
      h("span", { class: "sw", style: "background:" + c }), label, h("b", {}, fmtNum(v)))),
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
