// A study's parallel-coordinates chart, drawn on a canvas.
import { CHART_HEIGHT, setChartState } from "./charts.js";
import { h } from "./dom.js";
import { fmtNum } from "./format.js";
import { valueColor } from "./studies.js";

// Parallel coordinates on a canvas: one axis per varying parameter (log scale for log
// search spaces, evenly spaced levels for choices) and the metric last; one line per
// finished trial, coloured from worst (red) to best (green).
export function drawParallel(el, study) {
  const trials = study.trials.filter((t) => t.state === "FINISHED" && typeof t.value === "number");
  const names = (study.search_space ? Object.keys(study.search_space)
    : [...new Set(trials.flatMap((t) => Object.keys(t.hyperparameters)))].sort())
    .filter((n) => new Set(trials.map((t) => JSON.stringify(t.hyperparameters[n]))).size > 1);
  if (!trials.length || !names.length) {
    setChartState(el, "empty", trials.length ? "no parameter varies across the trials" : "no finished trial with a value yet");
    return;
  }
  const axes = names.map((n) => {
    const raw = trials.map((t) => t.hyperparameters[n]);
    const numeric = raw.every((v) => typeof v === "number");
    const log = numeric && study.search_space && /log/.test(study.search_space[n]._type) && raw.every((v) => v > 0);
    if (!numeric) {
      const levels = [...new Set(raw.map((v) => JSON.stringify(v)))].sort();
      return { name: n, pos: (v) => (levels.length > 1 ? levels.indexOf(JSON.stringify(v)) / (levels.length - 1) : 0.5),
        ticks: levels.map((l, i) => [levels.length > 1 ? i / (levels.length - 1) : 0.5, l.replace(/^"|"$/g, "")]) };
    }
    const f = log ? Math.log : (v) => v;
    const lo = Math.min(...raw.map(f)), hi = Math.max(...raw.map(f));
    const pos = (v) => (typeof v !== "number" ? null : hi > lo ? (f(v) - lo) / (hi - lo) : 0.5);
    return { name: n, pos, ticks: [[0, fmtNum(Math.min(...raw))], [1, fmtNum(Math.max(...raw))]] };
  });
  const vals = trials.map((t) => t.value);
  const vlo = Math.min(...vals), vhi = Math.max(...vals);
  axes.push({ name: study.metric, pos: (v) => (vhi > vlo ? (v - vlo) / (vhi - vlo) : 0.5),
    ticks: [[0, fmtNum(vlo)], [1, fmtNum(vhi)]], metric: true });
  const holder = el.querySelector(".plot");
  const canvas = h("canvas", { id: "parallel-canvas" });
  holder.append(canvas);
  const paint = () => {
    const width = Math.max(200, Math.floor(holder.clientWidth) || 420), height = CHART_HEIGHT;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const top = 22, bottom = height - 24, left = 40, right = width - 48;
    const x = (i) => left + (axes.length > 1 ? (i * (right - left)) / (axes.length - 1) : 0);
    const y = (p) => bottom - p * (bottom - top);
    ctx.lineWidth = 1.6;
    trials.forEach((t) => {
      ctx.strokeStyle = valueColor(t.value, vlo, vhi, study.direction);
      ctx.globalAlpha = 0.8;
      ctx.beginPath();
      let started = false;
      axes.forEach((a, i) => {
        const p = a.metric ? a.pos(t.value) : a.pos(t.hyperparameters[a.name]);
        if (p === null || p < 0) { started = false; return; }
        if (started) ctx.lineTo(x(i), y(p)); else { ctx.moveTo(x(i), y(p)); started = true; }
      });
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    axes.forEach((a, i) => {
      ctx.strokeStyle = "#6b7685"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x(i), top); ctx.lineTo(x(i), bottom); ctx.stroke();
      ctx.fillStyle = "#1f2733";
      ctx.fillText(a.name.length > 18 ? a.name.slice(0, 17) + "…" : a.name, x(i), 12);
      ctx.fillStyle = "#6b7685";
      for (const [p, label] of a.ticks.slice(0, 8)) ctx.fillText(String(label).slice(0, 10), x(i), y(p) + (p === 0 ? 14 : p === 1 ? -4 : 4));
    });
  };
  paint();
  el.dataset.axes = String(axes.length);
  el.dataset.lines = String(trials.length);
  new ResizeObserver(() => { if (canvas.isConnected) paint(); }).observe(holder);
  setChartState(el, "drawn", "");
}
