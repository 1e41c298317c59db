// A federated run's page: header, Overview tab's tables and cards (charts in metrics.js).
import { API, path, ROOT } from "./api.js";
import { GLOBAL } from "./charts.js";
import { h, link, stat } from "./dom.js";
import { duration, fmtNum, fmtParam, fmtSize, fmtTime, paramTitle, plural } from "./format.js";
import { dataLineageCard } from "./lineage.js";
import { drawCharts, metricsCard } from "./metrics.js";
import { afterFirst } from "./priority.js";
import { state } from "./state.js";
import { showTab, tabBar, tabOfUrl } from "./tabs.js";
import { crumbs } from "./tree.js";

// Lower is better for these statistics; higher for the rest.
const LOWER = /(loss|mse|mae|fprs?|fnrs?|fdrs?|fps|fns|error)$/i;

// ---------- run view ----------
export async function renderRun(main, ids, runJSON) {
  crumbs(ids, true);
  const base = new URL("runs/" + path(...ids), API);
  const run = await runJSON;
  state.run = run;
  state.base = base;
  state.series = {};
  const participants = run.participants.map((p) => p.id);
  const mlflowUrl = new URL(run.mlflow.url.replace(/^\//, ""), ROOT).href;
  main.replaceChildren(...[
    h("div", { class: "sub", style: "margin-bottom:4px" }, "Federated run"),
    h("h1", {}, run.run),
    h("div", { class: "sub" },
      h("span", { class: "badge " + (run.status || "") }, run.status || "—"),
      h("span", {}, plural(participants.length, "participant")),
      h("span", {}, "started " + fmtTime(run.start_time)),
      run.end_time ? h("span", {}, "took " + duration(run.start_time, run.end_time)) : null,
      h("div", { class: "actions" },
        link("c/" + path(ids[0], ids[1], ids[2]), "Studies & compare", { class: "btn", id: "experiment-studies" }),
        h("a", { class: "btn", id: "open-mlflow", href: mlflowUrl, target: "_blank", rel: "noopener" }, "Open in MLflow ↗"),
        h("a", { class: "btn primary", id: "download-all", href: base.href + "/bundle.zip", download: "" }, "⤓ Download all"))),
    tabBar(),
    h("div", { class: "tab-panel", id: "panel-overview", role: "tabpanel", "aria-labelledby": "tab-overview" },
      h("div", { class: "grid2" },
        h("div", { class: "card" }, h("h2", {}, "Hyperparameters"), paramsTable(run.hyperparameters)),
        h("div", { class: "card" }, h("h2", {}, "Participants — latest metrics"), latestTable(run))),
      metricsCard(run)),
    h("div", { class: "tab-panel", id: "panel-hardware", role: "tabpanel", "aria-labelledby": "tab-hardware", hidden: true }),
    h("div", { class: "tab-panel", id: "panel-logs", role: "tabpanel", "aria-labelledby": "tab-logs", hidden: true }),
  ].filter(Boolean));
  drawCharts();
  // The cards below the charts are added once the charts in view have their series: laid
  // out before, these long tables would hold back the charts' request (drawCharts finds the
  // charts in view by the page's layout) and then their drawing.
  const overview = document.getElementById("panel-overview");
  afterFirst().then(() => overview.append(...[
    dataLineageCard(run, ids),
    classCard(run),
    unattributedCard(run),
    artifactsCard(run),
  ].filter(Boolean)));
  showTab(tabOfUrl());
}

export function paramsTable(params) {
  const keys = Object.keys(params);
  if (!keys.length) return h("p", { class: "muted" }, "No hyperparameters logged.");
  return h("div", { class: "scroll" }, h("table", { id: "hyperparameters" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Value"))),
    h("tbody", {}, keys.map((k) => h("tr", {}, h("td", {}, k), h("td", { title: paramTitle(params[k]) }, fmtParam(params[k])))))));
}

export const isClassKey = (k) => /\/class_\d+$/.test(k);
export const isEpochKey = (k) => ("/" + k).includes("/epoch/");
// Hardware statistics (system/...) are drawn by the Hardware tab, by seconds, not here.
export const isSystemKey = (k) => k.startsWith("system/");

function latestTable(run) {
  const keys = run.metric_keys.filter((k) => !isClassKey(k) && !isEpochKey(k) && !isSystemKey(k));
  if (!keys.length) return h("p", { class: "muted" }, "No metrics logged.");
  const parts = run.participants.map((p) => p.id);
  const marks = {};
  for (const k of keys) {
    const vals = parts.map((p) => (run.latest_metrics.participants[p][k] || {}).value)
      .filter((v) => typeof v === "number");
    if (vals.length < 2) continue;
    const lower = LOWER.test(k.split("/").pop());
    const hi = Math.max(...vals), lo = Math.min(...vals);
    if (hi === lo) continue;
    marks[k] = { best: lower ? lo : hi, worst: lower ? hi : lo };
  }
  const cell = (p, k) => {
    const v = ((p === GLOBAL ? run.latest_metrics.global : run.latest_metrics.participants[p])[k] || {}).value;
    const m = p !== GLOBAL && marks[k];
    const cls = "num" + (m && v === m.best ? " best" : m && v === m.worst ? " worst" : "");
    return h("td", { class: cls, title: m && v === m.best ? "best" : m && v === m.worst ? "worst" : null }, fmtNum(v));
  };
  return h("div", { class: "scroll" }, h("table", { id: "latest-metrics" },
    h("thead", {}, h("tr", {}, h("th", {}, "Participant"), keys.map((k) => h("th", { class: "num" }, k)))),
    h("tbody", {},
      h("tr", { class: "global" }, h("td", {}, "Global"), keys.map((k) => cell(GLOBAL, k))),
      parts.map((p) => h("tr", { dataset: { participant: p } }, h("td", {}, p), keys.map((k) => cell(p, k)))))));
}

function classCard(run) {
  const stats = [...new Set(run.metric_keys.filter(isClassKey).map((k) => k.replace(/\/class_\d+$/, "")))].sort();
  if (!stats.length) {
    return h("div", { class: "card", id: "per-class" }, h("h2", {}, "Per-class statistics"),
      h("p", { class: "muted empty" }, "No per-class statistics logged (keys like evaluate/accuracy/class_0)."));
  }
  const box = h("div", {});
  const select = h("select", { id: "class-stat", "aria-label": "Statistic", onchange: () => draw() },
    stats.map((s) => h("option", { value: s }, s)));
  // Open on accuracy when there is one: the statistic most readers look for first.
  select.value = stats.find((s) => /\/accuracy$/.test(s)) || stats[0];
  function draw() {
    const stat = select.value;
    const classes = run.metric_keys.filter((k) => k.startsWith(stat + "/class_"))
      .sort((a, b) => +a.split("_").pop() - +b.split("_").pop());
    const rows = [[GLOBAL, run.latest_metrics.global], ...run.participants.map((p) => [p.id, run.latest_metrics.participants[p.id]])];
    const mean = (m) => {
      const v = classes.map((k) => (m[k] || {}).value).filter((x) => typeof x === "number");
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    };
    box.replaceChildren(h("div", { class: "scroll" }, h("table", { id: "class-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Participant"),
        classes.map((k) => h("th", { class: "num" }, "class " + k.split("_").pop())), h("th", { class: "num" }, "mean"))),
      h("tbody", {}, rows.map(([id, m]) => h("tr", { class: id === GLOBAL ? "global" : "" },
        h("td", {}, id === GLOBAL ? "Global" : id),
        classes.map((k) => h("td", { class: "num" }, fmtNum((m[k] || {}).value))),
        h("td", { class: "num" }, fmtNum(mean(m)))))))));
  }
  draw();
  return h("div", { class: "card", id: "per-class" },
    h("div", { class: "card-head" }, h("h2", {}, "Per-class statistics (latest round)"), select), box);
}

// Per-class statistics an original Synergos TTP logged with the class index as the step and
// every participant's values on it: shown as logged, one row per point, never charted.
function unattributedCard(run) {
  const found = run.unattributed;
  if (!found || !found.statistics.length) return null;
  const rows = found.statistics.flatMap((s) => s.points.map((p, i) =>
    h("tr", {}, h("td", {}, i ? "" : s.key), h("td", { class: "num" }, String(p.step)),
      h("td", { class: "num" }, fmtNum(p.value)), h("td", {}, fmtTime(new Date(p.timestamp).toISOString())))));
  return h("div", { class: "card", id: "unattributed" },
    h("h2", {}, "Statistics not attributable to a participant"),
    h("p", { class: "muted" }, found.note),
    h("div", { class: "scroll" }, h("table", { id: "unattributed-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Key as logged"), h("th", { class: "num" }, "Step as logged"),
        h("th", { class: "num" }, "Value"), h("th", {}, "Logged at"))),
      h("tbody", {}, rows))));
}

function artifactsCard(run) {
  const files = (list) => list.length
    ? h("ul", { class: "files" }, list.map((f) => h("li", {},
        h("a", { href: f.url, download: "" }, f.path), h("span", { class: "size" }, fmtSize(f.size)))))
    : h("p", { class: "muted" }, "No artifacts.");
  const groups = [h("details", { class: "artifact-group", open: true },
    h("summary", {}, "Global (federation)"), files(run.artifacts.global))];
  const many = run.participants.length > 6;
  for (const p of run.participants) {
    groups.push(h("details", { class: "artifact-group", open: !many, dataset: { participant: p.id } },
      h("summary", {}, p.id, h("a", { class: "btn", href: p.bundle, download: "" }, "ZIP")),
      files(run.artifacts.participants[p.id] || [])));
  }
  return h("div", { class: "card", id: "artifacts" },
    h("div", { class: "card-head" }, h("h2", {}, "Artifacts"),
      h("a", { class: "btn", href: state.base.href + "/bundle.zip", download: "" }, "Download all (ZIP)")),
    groups);
}
