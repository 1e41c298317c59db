// A run's metric charts: one per key, a line per participant and the global one, loaded when in view.
import { CHART_HEIGHT, chartAxes, color, emptyNotice, GLOBAL, linePoints, resizer, setChartState, showTip, xScale } from "./charts.js";
import { h } from "./dom.js";
import { isClassKey, isEpochKey, isSystemKey } from "./run.js";
import { firstComing } from "./priority.js";
import { chartData, fetchSeries, zoomHooks } from "./series.js";
import { state } from "./state.js";

// ---------- charts ----------
export function metricsCard(run) {
  const hasEpoch = run.metric_keys.some((k) => isEpochKey(k) && !isSystemKey(k));
  const seg = h("div", { class: "seg", role: "group", "aria-label": "Axis" },
    ["round", "epoch"].map((axis) => h("button", {
      class: state.axis === axis ? "on" : "", "data-axis": axis, disabled: axis === "epoch" && !hasEpoch,
      onclick: () => { state.axis = axis; seg.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.axis === axis)); drawCharts(); },
    }, axis === "round" ? "Rounds" : "Epochs")));
  const names = [GLOBAL, ...run.participants.map((p) => p.id)];
  const chips = h("div", { class: "chips", id: "series-toggles" }, names.map((name, i) =>
    h("button", { class: "chip" + (state.hidden.has(name) ? " off" : ""), dataset: { series: name },
      onclick: (ev) => toggle(name, ev.currentTarget) },
      h("span", { class: "sw", style: "background:" + (i ? color(i - 1) : "#111") }), name === GLOBAL ? "Global" : name)));
  const all = (show) => () => {
    for (const n of names) { if (show) state.hidden.delete(n); else if (n !== GLOBAL) state.hidden.add(n); }
    chips.querySelectorAll(".chip").forEach((c) => c.classList.toggle("off", state.hidden.has(c.dataset.series)));
    applyVisibility();
  };
  return h("div", { class: "card", id: "metrics" },
    h("div", { class: "card-head" }, h("h2", {}, "Metrics"), seg,
      h("button", { class: "btn", onclick: all(true) }, "Show all"),
      h("button", { class: "btn", onclick: all(false) }, "Global only")),
    chips, h("div", { class: "charts", id: "charts" }));
}
function toggle(name, chip) {
  if (state.hidden.has(name)) state.hidden.delete(name); else state.hidden.add(name);
  chip.classList.toggle("off", state.hidden.has(name));
  applyVisibility();
}
function applyVisibility() {
  for (const chart of Object.values(state.charts)) {
    chart.u.batch(() => chart.names.forEach((n, i) => {
      const show = !state.hidden.has(n);
      if (chart.u.series[i + 1].show !== show) chart.u.setSeries(i + 1, { show });
    }));
    emptyNotice(chart.el, chart.lines, chart.names);
  }
}

// Series are fetched when their chart comes near the viewport; charts that come into view
// together share one request. (Two requests side by side were measured slower: both often
// land on the same server worker, and the second answer then arrives after the first.)
let queue = new Map();
function request(key, el) {
  queue.set(key, el);
  if (queue.size > 1) return;
  const view = state.chartView;
  setTimeout(() => {
    const batch = [...queue];
    queue = new Map();
    if (view === state.chartView) load(batch, view);
  }, 0);
}
// A chart's width in CSS pixels: the series are asked for at two points per pixel column.
const plotWidth = (el) => Math.floor(el.querySelector(".plot").clientWidth) || 420;
async function load(batch, view, answered = () => {}) {
  let series;
  try {
    const points = Math.max(...batch.map(([, chartEl]) => plotWidth(chartEl)));
    const asked = fetchSeries(state.base.href, batch.map(([k]) => k), { points });
    asked.then(answered, answered);
    series = await asked;
  } catch (err) {
    if (view !== state.chartView) return;
    for (const [k, chartEl] of batch) {
      setChartState(chartEl, "error", "could not load the points of " + k + ": " + (err.message || err));
    }
    return;
  }
  if (view !== state.chartView) return;
  Object.assign(state.series, series);
  for (const [k, chartEl] of batch) plot(chartEl, k);
}

export function stopCharts() {
  for (const c of Object.values(state.charts)) { resizer.unobserve(c.u.root.parentNode); c.u.destroy(); }
  if (state.observer) state.observer.disconnect();
  state.charts = {};
  state.chartView += 1;
  queue = new Map();
  for (const k of ["charts", "chartsDrawn", "chartsSettled"]) delete document.body.dataset[k];
}

export function drawCharts() {
  const run = state.run;
  const box = document.getElementById("charts");
  stopCharts();
  box.replaceChildren();
  const keys = run.metric_keys.filter((k) => !isClassKey(k) && !isSystemKey(k) && (state.axis === "epoch") === isEpochKey(k));
  Object.assign(document.body.dataset, { charts: String(keys.length), chartsDrawn: "0", chartsSettled: "0" });
  const answered = firstComing();
  if (!keys.length) {
    answered();
    box.append(h("p", { class: "muted empty" }, "No " + state.axis + "-level metrics logged."));
    document.dispatchEvent(new CustomEvent("synergos:charts-drawn", { detail: { charts: 0 } }));
    return;
  }
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting || entry.target.dataset.asked) continue;
      observer.unobserve(entry.target);
      entry.target.dataset.asked = "true";
      const key = entry.target.dataset.metric;
      if (state.series[key]) plot(entry.target, key); else request(key, entry.target);
    }
  }, { root: document.getElementById("main"), rootMargin: "400px" });
  state.observer = observer;
  for (const key of keys) {
    const el = h("div", { class: "chart", dataset: { metric: key, chartView: String(state.chartView), state: "loading" } },
      h("h3", {}, key), h("div", { class: "plot" }),
      h("p", { class: "chart-state loading", role: "status" }, "loading…"));
    box.append(el);
    observer.observe(el);
  }
  // The charts already in view are asked for at once, once the run's view is built (its tab
  // shown), before the requests the rest of the page makes: the observer's first report
  // comes a frame later.
  const view = state.chartView;
  queueMicrotask(() => {
    if (view !== state.chartView) return;
    const reach = window.innerHeight + 400;  // as the observer's margin
    const batch = [...box.children].filter((el) => {
      const r = el.getBoundingClientRect();
      return r.height > 0 && r.top < reach && r.bottom > -400;
    }).map((el) => { observer.unobserve(el); el.dataset.asked = "true"; return [el.dataset.metric, el]; });
    if (batch.length) load(batch, view, answered); else answered();
  });
}

function plot(el, key) {
  const started = performance.now();
  const run = state.run;
  const s = state.series[key];
  // The global line is drawn last, on top of the participants' lines.
  const names = [...run.participants.map((p) => p.id), GLOBAL];
  const byName = {};
  for (const n of names) byName[n] = (n === GLOBAL ? s && s.global : s && s.participants[n]) || null;
  const lines = names.map((n) => byName[n] || { steps: [], values: [] });
  const holder = el.querySelector(".plot");
  if (!lines.some((l) => l.steps.length)) {
    setChartState(el, "empty", "no points logged for this key");
    return;
  }
  const data = chartData(lines);
  const xs = data[0];
  const chart = { key, names, el, lines: byName, overview: data, decimated: s.decimated, overviewDecimated: s.decimated };
  const lineOf = (found, n) => (n === GLOBAL ? found.global : found.participants[n]) || null;
  const zoom = zoomHooks(chart, state.base.href, lineOf);
  const tip = h("div", { class: "tip" });
  const axisName = s.axis === "epoch" ? "epoch" : "round";
  const opts = {
    width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
    legend: { show: false },
    cursor: { points: { size: 6 }, focus: { prox: 24 },
      bind: { dblclick: () => () => { zoom.reset(); return null; } } },
    focus: { alpha: 0.35 },
    scales: { x: xScale(true) },
    axes: chartAxes(axisName, true),
    series: [{ label: axisName }, ...names.map((n, i) => ({
      label: n === GLOBAL ? "Global" : n, show: !state.hidden.has(n),
      stroke: n === GLOBAL ? "#111" : color(i), width: n === GLOBAL ? 2.6 : 1.4, spanGaps: true,
      points: linePoints(byName[n] ? byName[n].steps.length : 0, xs.length < 40 && names.length < 12),
    }))],
    hooks: {
      setCursor: [(u) => showTip(u, tip, axisName, chart.decimated)],
      setScale: [zoom.setScale],
      draw: [() => {
        if (el.dataset.state === "drawn") return;
        const t = state.timings;
        t.drawStart = Math.min(t.drawStart || Infinity, started);
        t.drawEnd = Math.max(t.drawEnd || 0, performance.now());
        t.draw = t.drawEnd - t.drawStart;  // wall time: the first chart begun to the last drawn
        el.dataset.drawnMs = String(Math.round(performance.now()));  // since navigation began
        setChartState(el, "drawn", "");
        emptyNotice(el, byName, names);
      }],
    },
  };
  const u = new uPlot(opts, data, holder);
  u.over.append(tip);
  chart.u = u;
  state.charts[key] = chart;
  el.dataset.decimated = String(!!s.decimated);
  el.dataset.lines = String(names.length);
  holder.__chart = state.charts[key];
  resizer.observe(holder);
}
