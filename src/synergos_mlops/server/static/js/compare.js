// 2 to 10 runs side by side: differing hyperparameters, final metrics, overlaid charts.
import { API, getJSON, runHref } from "./api.js";
import { CHART_HEIGHT, chartAxes, chartBox, color, linePoints, resizer, setChartState, showTip, xScale } from "./charts.js";
import { h, link } from "./dom.js";
import { MAX_COMPARED } from "./folder.js";
import { fmtNum, fmtParam, plural } from "./format.js";
import { isClassKey, paramsTable } from "./run.js";
import { state } from "./state.js";
import { catalogueCrumbs, folderSteps } from "./tree.js";

// ---------- compare view ----------
export async function renderCompare(main, refs) {
  catalogueCrumbs([["Compare " + plural(refs.length, "run")]]);
  if (refs.length < 2 || refs.length > MAX_COMPARED) {
    main.replaceChildren(h("div", { class: "error", id: "error" },
      "Compare 2 to " + MAX_COMPARED + " runs: tick them in a runs table, then Compare."));
    return;
  }
  const url = new URL("compare", API);
  for (const r of refs) url.searchParams.append("run", r);
  const body = await getJSON(url);
  const runs = body.runs;
  // Runs of one experiment: the breadcrumb leads back to it.
  const places = new Set(runs.map((r) => JSON.stringify([r.collaboration, r.project, r.experiment])));
  if (places.size === 1) catalogueCrumbs([...folderSteps(JSON.parse([...places][0])), ["compare " + plural(runs.length, "run")]]);
  const label = (r) => r.run + (new Set(runs.map((x) => x.experiment)).size > 1 ? " (" + r.experiment + ")" : "");
  const head = (first) => h("thead", {}, h("tr", {}, h("th", {}, first),
    runs.map((r, i) => h("th", {}, h("span", { class: "sw", style: "background:" + color(i) }),
      link(runHref(r.collaboration, r.project, r.experiment, r.run), label(r))))));
  const diff = body.hyperparameters;
  const diffKeys = Object.keys(diff.differing);
  const commonKeys = Object.keys(diff.common);
  const keys = Object.keys(body.series);
  Object.assign(document.body.dataset, { charts: String(keys.length), chartsDrawn: "0", chartsSettled: "0" });
  const charts = keys.map((k) => chartBox(null, k));
  main.replaceChildren(
    h("div", { class: "sub", style: "margin-bottom:4px" }, "Comparison"),
    h("h1", {}, plural(runs.length, "run")),
    h("div", { class: "card", id: "hyperparameter-diff" }, h("h2", {}, "Hyperparameters that differ"),
      diffKeys.length ? h("div", { class: "scroll" }, h("table", { id: "hp-diff" }, head("Name"),
        h("tbody", {}, diffKeys.map((k) => h("tr", { dataset: { param: k } }, h("td", {}, k),
          diff.differing[k].map((v) => h("td", {}, v === null || v === undefined ? "— (not set)" : fmtParam(v))))))))
        : h("p", { class: "muted" }, "Every hyperparameter is the same."),
      commonKeys.length ? h("details", { id: "hp-common" }, h("summary", {}, commonKeys.length + " the same in every run"),
        paramsTable(diff.common)) : null),
    h("div", { class: "card", id: "final-metrics" }, h("h2", {}, "Final metrics"),
      finalTable("final-table", head("Global"), body.metrics.keys.map((k) => [k, body.metrics.global[k]])),
      Object.keys(body.metrics.participants).map((p) => h("details", { class: "participant-final", dataset: { participant: p } },
        h("summary", {}, p),
        finalTable(null, head(p), Object.entries(body.metrics.participants[p]))))),
    h("div", { class: "card", id: "metrics" }, h("h2", {}, "Metrics, overlaid"),
      h("p", { class: "muted small" }, "Thick lines: each run's global value; thin: its participants."),
      keys.length ? h("div", { class: "charts", id: "charts" }, charts) : h("p", { class: "muted" }, "No metric key is common to these runs.")));
  keys.forEach((k, i) => plotCompared(charts[i], k, body.series[k], runs));
}

// Final metrics: the main ones first (evaluate/, then train/, then the rest, by name); the
// per-class statistics after them, one folded group per statistic.
const STAGES = ["evaluate", "train", "predict"];
const stageOf = (k) => { const i = STAGES.indexOf(k.split("/")[0]); return i < 0 ? STAGES.length : i; };
const byStage = (a, b) => stageOf(a) - stageOf(b) || a.localeCompare(b, undefined, { numeric: true });
function finalTable(id, head, entries) {
  const row = ([k, vs]) => h("tr", { dataset: { key: k } }, h("td", {}, k), vs.map((v) => h("td", { class: "num" }, fmtNum(v))));
  const main = entries.filter(([k]) => !isClassKey(k)).sort((a, b) => byStage(a[0], b[0]));
  const groups = new Map();
  for (const entry of entries.filter(([k]) => isClassKey(k)).sort((a, b) => byStage(a[0], b[0]))) {
    const statistic = entry[0].replace(/\/class_\d+$/, "");
    if (!groups.has(statistic)) groups.set(statistic, []);
    groups.get(statistic).push(entry);
  }
  return h("div", { class: "final-metrics" },
    h("div", { class: "scroll" }, h("table", { id }, head, h("tbody", {}, main.map(row)))),
    groups.size ? h("details", { class: "final-classes" },
      h("summary", {}, plural(groups.size, "per-class statistic") + " (" + plural([...groups.values()].flat().length, "row") + ")"),
      [...groups].map(([statistic, rows]) => h("details", { class: "final-class-group", dataset: { statistic } },
        h("summary", {}, statistic + " (" + plural(rows.length, "class", "classes") + ")"),
        h("div", { class: "scroll" }, h("table", {}, head.cloneNode(true), h("tbody", {}, rows.map(row))))))) : null);
}

function plotCompared(el, key, entry, runs) {
  const lines = [];
  entry.runs.forEach((r, i) => {
    if (r.global) lines.push({ label: runs[i].run + " global", run: i, line: r.global, global: true });
    for (const [p, line] of Object.entries(r.participants)) lines.push({ label: runs[i].run + " " + p, run: i, line });
  });
  if (!lines.some((l) => l.line.steps.length)) { setChartState(el, "empty", "no points logged for this key"); return; }
  const holder = el.querySelector(".plot");
  const xs = [...new Set(lines.flatMap((l) => l.line.steps))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs, ...lines.map((l) => {
    const ys = new Array(xs.length).fill(null);
    l.line.steps.forEach((st, i) => { ys[index.get(st)] = l.line.values[i]; });
    return ys;
  })];
  const tip = h("div", { class: "tip" });
  const opts = {
    width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
    legend: { show: false }, scales: { x: xScale(true) },
    cursor: { points: { size: 6 }, focus: { prox: 24 } },
    axes: chartAxes(entry.axis, true),
    series: [{ label: entry.axis }, ...lines.map((l) => ({
      label: l.label, stroke: color(l.run), width: l.global ? 2.6 : 1, dash: l.global ? undefined : [4, 3], spanGaps: true,
      points: linePoints(l.line.steps.length, xs.length < 40 && lines.length < 12),
    }))],
    hooks: {
      setCursor: [(u) => showTip(u, tip, entry.axis)],
      draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }],
    },
  };
  const u = new uPlot(opts, data, holder);
  u.over.append(tip);
  state.charts["compare:" + key] = { u, names: [], el, lines: {} };
  holder.__chart = state.charts["compare:" + key];
  resizer.observe(holder);
  el.dataset.lines = String(lines.length);
}
