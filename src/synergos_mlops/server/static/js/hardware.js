// A run's Hardware tab: a chart per system/ statistic and the participants × rounds heatmap.
import { getJSON, ROOT } from "./api.js";
import { CHART_HEIGHT, chartAxes, color, linePoints, resizer, setChartState, showTip, xScale } from "./charts.js";
import { code, h } from "./dom.js";
import { fmtNum } from "./format.js";
import { route } from "./main.js";
import { isSystemKey } from "./run.js";
import { state } from "./state.js";
import { tabs } from "./tabs.js";

// ----- Hardware: a chart per system/... statistic, a line per participant, by seconds since
// the run's start, rounds shaded; and a participants × rounds heatmap of the summary.
export async function loadHardware(panel) {
  const view = tabs.view;
  panel.replaceChildren(h("p", { class: "muted", id: "hardware-loading" }, "Loading hardware statistics…"));
  let body;
  try {
    body = await getJSON(state.base.href + "/system");
  } catch (err) {
    if (view !== tabs.view) return;
    panel.replaceChildren(h("div", { class: "error", id: "hardware-error" },
      "could not load the hardware statistics: " + (err.message || err)));
    return;
  }
  if (view !== tabs.view) return;
  const keys = (body.keys || []).filter(isSystemKey).sort();
  if (!keys.length) {
    panel.replaceChildren(h("div", { class: "card", id: "hardware-empty" }, h("h2", {}, "Hardware"),
      h("p", { class: "muted" }, "No hardware statistics were recorded for this run's participants."),
      h("p", {}, "Run a monitor on each participant's machine beside its training, e.g. ",
        code("synmlops monitor --collaboration " + JSON.stringify(route().ids[0] || "") +
          " --participant <id> --tracking-uri " + ROOT.origin),
        ", or in Python ", code("with run.monitor(\"<participant>\"): ..."),
        ". Samples are attached to the participant's runs by time.")));
    return;
  }
  const charts = keys.map((k) => h("div", { class: "chart", dataset: { systemKey: k, state: "loading" } },
    h("h3", {}, k.replace(/^system\//, "")), h("div", { class: "plot" }),
    h("p", { class: "chart-state loading", role: "status" }, "loading…")));
  panel.replaceChildren(
    heatmapCard(body),
    h("div", { class: "card", id: "hardware" },
      h("div", { class: "card-head" }, h("h2", {}, "Hardware statistics"),
        h("span", { class: "muted small" }, "seconds since the run's start; shaded bands are rounds")),
      h("div", { class: "charts", id: "hardware-charts" }, charts)));
  document.body.dataset.hardwareCharts = String(keys.length);
  keys.forEach((k, i) => plotSystem(charts[i], k, body));
}

function plotSystem(el, key, body) {
  const names = Object.keys(body.participants).filter((p) => (body.participants[p].series || {})[key]);
  const all = Object.keys(body.participants);
  const lines = names.map((p) => body.participants[p].series[key]);
  if (!lines.some((l) => l.seconds.length)) { setChartState(el, "empty", "no samples of this statistic"); return; }
  // Points are put on a common x: tenths of a second, coarser when the run is long, so a
  // chart holds at most ~4,000 positions whatever the run's length (the last sample wins).
  let lo = Infinity, hi = -Infinity;
  for (const l of lines) for (const s of l.seconds) { if (s < lo) lo = s; if (s > hi) hi = s; }
  const res = Math.max(0.1, (hi - lo) / 4000);
  const bin = (s) => Math.round(s / res) * res;
  const xs = [...new Set(lines.flatMap((l) => l.seconds.map(bin)))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs, ...lines.map((l) => {
    const ys = new Array(xs.length).fill(null);
    l.seconds.forEach((s, i) => { ys[index.get(bin(s))] = l.values[i]; });
    return ys;
  })];
  const rounds = body.rounds || [];
  const holder = el.querySelector(".plot");
  const tip = h("div", { class: "tip" });
  const bands = (u) => {
    const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
    ctx.save();
    ctx.beginPath(); ctx.rect(u.bbox.left, top, u.bbox.width, height); ctx.clip();
    ctx.font = Math.round(10 * devicePixelRatio) + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.textAlign = "left";  // uPlot leaves "right" after its value axis: "R0" would end at the band's edge, cut
    rounds.forEach((r, i) => {
      const x0 = u.valToPos(r.start, "x", true), x1 = u.valToPos(r.end, "x", true);
      if (i % 2 === 0) { ctx.fillStyle = "rgba(36, 87, 197, 0.06)"; ctx.fillRect(x0, top, x1 - x0, height); }
      ctx.fillStyle = "rgba(36, 87, 197, 0.45)";
      ctx.fillRect(Math.round(x1), top, Math.max(1, devicePixelRatio), height);
      if (x1 - x0 > 16 * devicePixelRatio) { ctx.fillStyle = "#6b7685"; ctx.fillText("R" + r.round, x0 + 3 * devicePixelRatio, top + 2); }
    });
    ctx.restore();
  };
  const opts = {
    width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
    legend: { show: false }, cursor: { points: { size: 6 }, focus: { prox: 24 } }, focus: { alpha: 0.35 },
    // Every round's band is in view, also where no sample falls.
    scales: { x: xScale(false, (u, mn, mx) => rounds.length
      ? [Math.min(mn, rounds[0].start), Math.max(mx, rounds[rounds.length - 1].end)] : [mn, mx]) },
    axes: chartAxes("seconds", false),
    series: [{ label: "s" }, ...names.map((n) => ({
      label: n, stroke: color(all.indexOf(n)), width: 1.4, spanGaps: true,
      points: linePoints(body.participants[n].series[key].seconds.length, xs.length < 40) }))],
    hooks: {
      drawAxes: [bands],
      setCursor: [(u) => showTip(u, tip, "second")],
      draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }],
    },
  };
  const u = new uPlot(opts, data, holder);
  u.over.append(tip);
  const chart = { u, names, el, lines: {} };
  tabs.hw.push(chart);
  holder.__chart = chart;
  resizer.observe(holder);
  el.dataset.lines = String(names.length);
  el.dataset.rounds = String(rounds.length);
}

// Participants × rounds, one coloured cell each (light: low, dark red: high), so the
// straggler's long rounds or a participant's memory peak stand out; the value on hover.
const FIGURES = [
  ["duration_seconds", "Round duration", "s"], ["cpu_mean_percentage", "CPU mean (machine)", "%"],
  ["process_cpu_mean_percentage", "CPU mean (process)", "%"], ["memory_peak_megabytes", "Memory peak (machine)", "MB"],
  ["process_memory_peak_megabytes", "Memory peak (process)", "MB"], ["samples", "Samples", ""],
];
function heatmapCard(body) {
  const summary = body.summary || { participants: [], rounds: [] };
  const figures = FIGURES.filter(([k]) => summary[k]);
  const box = h("div", {});
  const select = h("select", { id: "heatmap-figure", "aria-label": "Figure", onchange: () => draw() },
    figures.map(([k, label, unit]) => h("option", { value: k }, label + (unit ? " (" + unit + ")" : ""))));
  function draw() {
    const [key, label, unit] = figures.find(([k]) => k === select.value) || figures[0];
    const matrix = summary[key];
    const values = matrix.flat().filter((v) => typeof v === "number");
    const lo = Math.min(...values), hi = Math.max(...values);
    const shade = (v) => {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      return "background:hsl(" + Math.round(50 - 50 * t) + ", 85%, " + Math.round(92 - 44 * t) + "%);"
        + (t > 0.6 ? "color:#fff" : "");
    };
    box.replaceChildren(h("div", { class: "scroll" }, h("table", { id: "heatmap", class: "heatmap", dataset: { figure: key } },
      h("thead", {}, h("tr", {}, h("th", {}, "Participant"), summary.rounds.map((r) => h("th", { class: "num" }, "R" + r)))),
      h("tbody", {}, summary.participants.map((p, i) => h("tr", { dataset: { participant: p } }, h("td", {}, p),
        summary.rounds.map((r, j) => {
          const v = matrix[i][j];
          const text = p + ", round " + r + ": " + (v === null ? "nothing recorded" : fmtNum(v, unit));
          return h("td", { class: "num heat" + (v === null ? " none" : ""), dataset: { round: r }, title: text,
            style: v === null ? null : shade(v) }, v === null ? "·" : fmtNum(v));
        })))))));
    box.dataset.label = label;
  }
  if (!figures.length || !summary.participants.length || !summary.rounds.length) {
    return h("div", { class: "card", id: "heatmap-card" }, h("h2", {}, "Participants × rounds"),
      h("p", { class: "muted" }, "No rounds to summarise: the run logs no round-level metric yet."));
  }
  draw();
  return h("div", { class: "card", id: "heatmap-card" },
    h("div", { class: "card-head" }, h("h2", {}, "Participants × rounds"), select,
      h("span", { class: "muted small" }, "darker is higher; hover a cell for its value")), box);
}
