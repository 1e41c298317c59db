// A hyperparameter-tuning study's page: counts, best trial, importance, history and trials.
import { API, getJSON, path, runHref } from "./api.js";
import { CHART_HEIGHT, chartAxes, chartBox, resizer, setChartState, xScale } from "./charts.js";
import { h, link } from "./dom.js";
import { compareButton } from "./folder.js";
import { fmtNum, fmtParam, fmtTime, paramTitle, plural } from "./format.js";
import { drawParallel } from "./parallel.js";
import { paramsTable } from "./run.js";
import { state } from "./state.js";
import { catalogueCrumbs, folderSteps } from "./tree.js";

// ---------- study view ----------
// One study: counts by state (refreshed every 2 s while a trial runs or waits), the best
// trial, the optimization history, parallel coordinates of the varying parameters coloured
// by the metric, parameter importance and every trial with its participants' spread.
const POLL_MS = 2000;
let studyPoll = null;
const stateCounts = (counts) => h("div", { class: "stats", id: "study-counts" },
  ["FINISHED", "RUNNING", "SCHEDULED", "FAILED", "KILLED"].map((k) =>
    h("div", { class: "stat", dataset: { state: k } }, h("b", {}, counts[k] || 0), k.toLowerCase())));
const busy = (study) => (study.counts.RUNNING || 0) + (study.counts.SCHEDULED || 0) > 0;
// Red (worst) to green (best) along the study's direction.
export function valueColor(v, lo, hi, direction) {
  let t = hi > lo ? (v - lo) / (hi - lo) : 1;
  if (direction === "minimize") t = 1 - t;
  return "hsl(" + Math.round(t * 120) + ", 70%, 42%)";
}

export async function renderStudy(main, ids) {
  catalogueCrumbs([...folderSteps(ids.slice(0, 3)), ["study " + ids[3]]]);
  const url = new URL("studies/" + path(...ids), API);
  const study = await getJSON(url);
  drawStudy(main, ids, study);
  const view = state.chartView;
  const poll = async () => {
    studyPoll = null;
    if (view !== state.chartView) return;
    try {
      const fresh = await getJSON(url);
      if (view !== state.chartView) return;
      const changed = JSON.stringify(fresh.counts) !== JSON.stringify(study.counts)
        || JSON.stringify(fresh.history) !== JSON.stringify(study.history);
      if (changed) {
        const old = state.charts.history;
        if (old) { resizer.unobserve(old.u.root.parentNode); old.u.destroy(); delete state.charts.history; }
        Object.assign(study, fresh);
        drawStudy(main, ids, study);
      }
      else document.getElementById("study-counts").replaceWith(stateCounts(fresh.counts));
      document.body.dataset.studyRefreshed = String(+(document.body.dataset.studyRefreshed || 0) + 1);
    } catch (err) { /* the next poll tries again */ }
    if (busy(study) && view === state.chartView) studyPoll = setTimeout(poll, POLL_MS);
  };
  if (busy(study)) studyPoll = setTimeout(poll, POLL_MS);
}

function drawStudy(main, ids, study) {
  const view = state.chartView;
  Object.assign(document.body.dataset, { charts: "2", chartsDrawn: "0", chartsSettled: "0" });
  const history = chartBox("history-chart", "Optimization history: " + (study.metric || "no metric") + " by trial");
  const parallel = chartBox("parallel-chart", "Parallel coordinates (colour: " + (study.metric || "metric") + ")");
  main.replaceChildren(
    h("div", { class: "sub", style: "margin-bottom:4px" }, study.default ? "Study (runs named optim_run_*)" : "Study"),
    h("h1", {}, study.study),
    h("div", { class: "sub" },
      h("span", {}, (study.direction || "") + " " + (study.metric || "—")),
      h("span", {}, plural(study.trials.length, "trial")),
      study.created ? h("span", {}, "created " + fmtTime(study.created)) : null),
    stateCounts(study.counts),
    h("div", { class: "grid2" }, bestCard(ids, study), importanceCard(study)),
    h("div", { class: "card" }, h("h2", {}, "Trials over time"), h("div", { class: "charts study-charts" }, history, parallel)),
    trialsCard(ids, study),
    searchSpaceCard(study));
  if (view !== state.chartView) return;
  drawHistory(history, study);
  drawParallel(parallel, study);
}

// A trial's hardware cost (summed over its participants' samples), short, and its title
// with every participant's figures; "—" when no participant was sampled.
const round1 = (v) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);
function costText(hw) {
  if (!hw) return "—";
  const parts = [];
  if (hw.cpu_seconds !== null) parts.push(fmtNum(round1(hw.cpu_seconds)) + " CPU·s");
  if (hw.gpu_seconds !== null) parts.push(fmtNum(round1(hw.gpu_seconds)) + " GPU·s");
  if (hw.memory_peak_megabytes !== null) parts.push(fmtNum(Math.round(hw.memory_peak_megabytes)) + " MB peak");
  if (hw.network_megabytes !== null) parts.push(fmtNum(round1(hw.network_megabytes)) + " MB net");
  return parts.length ? parts.join(" · ") : "—";
}
function costTitle(hw) {
  if (!hw) return "no hardware samples";
  return Object.entries(hw.participants).map(([p, v]) => p + ": " + costText(v)).join("\n");
}
const costliestText = (hw) => (hw && hw.costliest
  ? hw.costliest.participant + " (" + fmtNum(round1(hw.costliest.value)) + (hw.costliest.by === "gpu_seconds" ? " GPU·s)" : " CPU·s)")
  : "—");

function bestCard(ids, study) {
  const best = study.best;
  const body = best
    ? [h("div", { class: "best-value" }, fmtNum(best.value)),
       h("p", {}, link(runHref(ids[0], ids[1], ids[2], best.run), best.run), " · trial " + best.number),
       h("p", { class: "best-hardware", title: costTitle(best.hardware) }, "Hardware: " + costText(best.hardware),
         best.hardware && best.hardware.costliest ? " · costliest " + costliestText(best.hardware) : null),
       paramsTable(best.hyperparameters)]
    : [h("p", { class: "muted" }, "No finished trial with a value of " + (study.metric || "the metric") + " yet.")];
  return h("div", { class: "card", id: "best-trial" }, h("h2", {}, "Best trial"), body);
}

function importanceCard(study) {
  const imp = study.importance;
  const names = Object.keys(imp.params);
  return h("div", { class: "card", id: "importance" }, h("h2", {}, "Parameter importance"),
    names.length
      ? h("div", { class: "bars" }, names.map((n) => h("div", { class: "bar-row", dataset: { param: n } },
          h("span", { class: "bar-name" }, n),
          h("span", { class: "bar" }, h("span", { style: "width:" + (imp.params[n] * 100).toFixed(1) + "%" })),
          h("span", { class: "num" }, (imp.params[n] * 100).toFixed(1) + " %"))))
      : h("p", { class: "muted" }, imp.note || "Not enough finished trials."),
    h("p", { class: "muted small" }, imp.method + ", " + plural(imp.trials_used, "trial")));
}

function trialsCard(ids, study) {
  if (!study.trials.length) return h("div", { class: "card", id: "trials" }, h("h2", {}, "Trials"), h("p", { class: "muted" }, "No trials yet."));
  const names = [...new Set(study.trials.flatMap((t) => Object.keys(t.hyperparameters)))].sort();
  const shownNames = study.search_space ? Object.keys(study.search_space) : names;
  const values = study.trials.flatMap((t) => (t.spread ? [t.spread.min, t.spread.max] : []));
  const lo = Math.min(...values), hi = Math.max(...values);
  const rangeBar = (sp) => {
    if (!sp || !(hi > lo)) return null;
    const left = ((sp.min - lo) / (hi - lo)) * 100, width = Math.max(1, ((sp.max - sp.min) / (hi - lo)) * 100);
    return h("span", { class: "range", title: fmtNum(sp.min) + " – " + fmtNum(sp.max) },
      h("span", { style: "left:" + left + "%;width:" + width + "%" }));
  };
  const table = h("table", { id: "trials-table" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "#"),
      h("th", { class: "num", title: "the tuner's own trial number (Optuna) or id (Ray)" }, "Tuner #"), h("th", {}, "Run"), h("th", {}, "State"),
      shownNames.map((n) => h("th", {}, n)), h("th", { class: "num" }, study.metric || "value"),
      h("th", {}, "Participants: min – max"), h("th", {}, "Worst participant"), h("th", { class: "num" }, "Wall time"),
      h("th", { title: "summed over the participants shown" }, "Hardware"), h("th", {}, "Costliest participant"))),
    h("tbody", {}, study.trials.map((t) => h("tr", { dataset: { trial: t.number, state: t.state }, class: t.outside_space.length ? "outside" : "" },
      h("td", {}, h("input", { type: "checkbox", class: "pick", value: JSON.stringify([ids[0], ids[1], ids[2], t.run]), "aria-label": "compare " + t.run })),
      h("td", { class: "num" }, t.number),
      h("td", { class: "num tuner" }, t.tuner ? String(t.tuner.trial) : "—"),
      h("td", {}, link(runHref(ids[0], ids[1], ids[2], t.run), t.run)),
      h("td", {}, h("span", { class: "badge " + t.state }, t.state)),
      shownNames.map((n) => h("td", { class: t.outside_space.includes(n) ? "outside-value" : "",
        title: t.outside_space.includes(n) ? "outside the search space" : paramTitle(t.hyperparameters[n]) }, fmtTrialParam(t, n))),
      h("td", { class: "num" + (study.best && study.best.number === t.number ? " best" : "") }, fmtNum(t.value),
        t.value === null && typeof t.last_value === "number"
          ? h("span", { class: "muted last-value", title: "no value (the trial failed); the last value it logged" }, " last " + fmtNum(t.last_value)) : null),
      h("td", { class: "spread" }, t.spread ? [fmtNum(t.spread.min) + " – " + fmtNum(t.spread.max), rangeBar(t.spread)] : "—"),
      h("td", {}, t.spread ? t.spread.worst.participant + " (" + fmtNum(t.spread.worst.value) + ")" : "—"),
      h("td", { class: "num" }, t.wall_time_s === null ? "—" : fmtNum(Math.round(t.wall_time_s)) + " s"),
      h("td", { class: "hardware", title: costTitle(t.hardware) }, costText(t.hardware)),
      h("td", { class: "costliest" }, costliestText(t.hardware))))));
  const outside = study.trials.filter((t) => t.outside_space.length).length;
  return h("div", { class: "card", id: "trials" },
    h("div", { class: "card-head" }, h("h2", {}, "Trials"), compareButton(table),
      outside ? h("span", { class: "muted", id: "outside-note" }, outside + " outside the search space (marked)") : null,
      study.scoped ? h("span", { class: "muted", id: "scoped-note" }, "participant figures: your participants only") : null),
    h("div", { class: "scroll" }, table));
}

// A trial's hyperparameter as its type says: absent "—", None "null", a string that reads as
// another type quoted ("True", "0.5"), a float strict JSON cannot hold ("NaN") as its text.
function fmtTrialParam(t, n) {
  if (!(n in t.hyperparameters)) return "—";
  const v = t.hyperparameters[n], type = (t.hyperparameter_types || {})[n];
  if (v === null) return "null";
  if (typeof v === "string") {
    const looks = type === "str" && (v !== v.trim() || /^(true|false|none|null|nan|[-+]?inf(inity)?|[-+]?[0-9.]+([eE][-+]?[0-9]+)?|[[{"].*)$/i.test(v));
    return looks ? JSON.stringify(v) : v;
  }
  return typeof v === "object" ? JSON.stringify(v) : typeof v === "boolean" ? (v ? "True" : "False") : fmtParam(v);
}

function searchSpaceCard(study) {
  if (!study.search_space) return null;
  const space = study.search_space;
  return h("div", { class: "card", id: "search-space" }, h("h2", {}, "Search space"),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Values"))),
      h("tbody", {}, Object.keys(space).map((n) => h("tr", {}, h("td", {}, n), h("td", {}, space[n]._type),
        h("td", {}, JSON.stringify(space[n]._value))))))));
}

function drawHistory(el, study) {
  const points = study.history;
  if (!points.length) { setChartState(el, "empty", "no finished trial with a value yet"); return; }
  const holder = el.querySelector(".plot");
  const data = [points.map((p) => p.number), points.map((p) => p.value), points.map((p) => p.best)];
  const opts = {
    width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
    legend: { show: true }, scales: { x: xScale(true) },
    axes: chartAxes("trial", true),
    series: [{ label: "trial" },
      { label: "value", stroke: "#2457c5", width: 0, points: { show: true, size: 7, fill: "#2457c5" } },
      { label: "best so far", stroke: "#1a8a4a", width: 2 }],
    hooks: { draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }] },
  };
  const u = new uPlot(opts, data, holder);
  state.charts["history"] = { u, names: [], el, lines: {} };
  holder.__chart = state.charts["history"];
  resizer.observe(holder);
}
