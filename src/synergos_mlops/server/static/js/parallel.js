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
    const raw = trials.filter((t) => n in t.hyperparameters).map((t) => t.hyperparameters[n]); // absent: not applicable
    const numeric = raw.every((v) => typeof v === "number");
    const log = numeric && study.search_space && /log/.test(study.search_space[n]._type) && raw.every((v) => v > 0);
    if (!numeric) {
      const levels = [...new Set(raw.map((v) => JSON.stringify(v)))].sort();
      return { name: n, pos: (v) => (v === undefined ? null : levels.length > 1 ? levels.indexOf(JSON.stringify(v)) / (levels.length - 1) : 0.5),
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
    // Titles on a row of their own above the top ticks; each title and tick label is cut to the
    // room between axes; the first and last axes stand in by half their widest label, so nothing
    // is clipped at the edges.
    ctx.font = "11px system-ui, sans-serif";
    const room = axes.length > 1 ? Math.max(40, (width - 24) / axes.length - 6) : width - 12;
    const fit = (text) => {
      let s = String(text);
      if (ctx.measureText(s).width <= room) return s;
      while (s.length > 1 && ctx.measureText(s + "…").width > room) s = s.slice(0, -1);
      return s + "…";
    };
    const labels = axes.map((a) => ({ title: fit(a.name), ticks: a.ticks.slice(0, 8).map(([p, label]) => [p, fit(label)]) }));
    const half = (i) => Math.max(...[labels[i].title, ...labels[i].ticks.map(([, l]) => l)].map((s) => ctx.measureText(s).width)) / 2;
    const TITLE = 12, top = 34, bottom = height - 20, left = Math.ceil(half(0)) + 4, right = width - Math.ceil(half(axes.length - 1)) - 4;
    const x = (i) => left + (axes.length > 1 ? (i * (right - left)) / (axes.length - 1) : (right - left) / 2);
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
    ctx.textAlign = "center";
    const boxes = [];  // every label's box, to check that none is cut or overlaps another
    const text = (s, cx, baseline) => {
      ctx.fillText(s, cx, baseline);
      const w = ctx.measureText(s).width;
      boxes.push([cx - w / 2, baseline - 9, cx + w / 2, baseline + 2]);
    };
    axes.forEach((a, i) => {
      ctx.strokeStyle = "#6b7685"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x(i), top); ctx.lineTo(x(i), bottom); ctx.stroke();
      ctx.fillStyle = "#1f2733";
      text(labels[i].title, x(i), TITLE);
      ctx.fillStyle = "#6b7685";
      for (const [p, label] of labels[i].ticks) text(label, x(i), y(p) + (p === 0 ? 14 : p === 1 ? -5 : 4));
    });
    const cut = boxes.filter(([x0, y0, x1, y1]) => x0 < 0 || x1 > width || y0 < 0 || y1 > height).length;
    const overlaps = boxes.filter((b, i) => boxes.some((o, j) => j > i && b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3])).length;
    el.dataset.labelsCut = String(cut);
    el.dataset.labelsOverlapping = String(overlaps);
  };
  paint();
  el.dataset.axes = String(axes.length);
  el.dataset.lines = String(trials.length);
  new ResizeObserver(() => { if (canvas.isConnected) paint(); }).observe(holder);
  setChartState(el, "drawn", "");
}
