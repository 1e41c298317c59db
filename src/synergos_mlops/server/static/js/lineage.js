// A run's Data and lineage card and the lineage graph (also on a model version's page).
import { API, enc, getJSON, path, runHref } from "./api.js";
import { columnChips, datasetHref, mlflowHash, rowsText, runRef, shortDigest } from "./catalogue.js";
import { code, external, h, link } from "./dom.js";
import { afterFirst } from "./priority.js";

// ----- the run page's "Data and lineage" card: datasets per participant and split, drift
// against the project's previous and next runs, and dataset → participant run → federated
// run → logged model → model version, left to right (hover a node to trace its path).
const LINEAGE_COLUMNS = [["dataset", "Data"], ["participant_run", "Participant runs"], ["federated_run", "Federated run"],
  ["logged_model", "Models"], ["model_version", "Model versions"]];
export function dataLineageCard(run, ids) {
  const box = h("div", { class: "card", id: "data-lineage", dataset: { state: "loading" } }, h("h2", {}, "Data and lineage"),
    h("p", { class: "muted", id: "data-lineage-loading" }, "Loading datasets and lineage…"));
  const base = new URL("runs/" + path(...ids), API).href;
  // Asked for once the charts' series are answered (which the run page waits on most).
  afterFirst()
    .then(() => Promise.all([getJSON(base + "/datasets"), getJSON(new URL("lineage/runs/" + path(...ids), API))]))
    .then(([data, lineage]) => fillDataLineage(box, run, ids, data, lineage))
    .catch((err) => {
      box.dataset.state = "error";
      box.replaceChildren(h("h2", {}, "Data and lineage"),
        h("p", { class: "error", id: "data-lineage-error" }, "could not load the datasets and lineage: " + (err.message || err)));
    });
  return box;
}
function fillDataLineage(box, run, ids, data, lineage) {
  const datasets = data.datasets || [];
  const drift = data.drift || [];
  const versions = lineage.model_versions || [];
  const models = lineage.models || [];
  if (!datasets.length && !models.length && !versions.length) {
    box.dataset.state = "empty";
    box.replaceChildren(h("h2", {}, "Data and lineage"), h("p", { class: "muted", id: "data-lineage-empty" },
      "No datasets were catalogued for this run's participants, and no model came out of it. ",
      "Log a participant's data summary with ", code("run.log_dataset(\"<participant>\", \"train\", summary)"),
      ", or let ", code("synmlops ingest"), " read the workers' ", code("catalogue.json"), "."));
    return;
  }
  const drifted = new Set(drift.map((d) => d.participant + "\u0000" + d.split));
  const table = datasets.length ? h("div", { class: "scroll" }, h("table", { id: "run-datasets" },
    h("thead", {}, h("tr", {}, ["Participant", "Split", "Dataset", "Kind", "Rows", "Columns and types", "Drift"]
      .map((t, i) => h("th", { class: i === 4 ? "num" : "" }, t)))),
    h("tbody", {}, datasets.map((d) => h("tr", { dataset: { participant: d.participant, split: d.split || "", digest: d.digest } },
      h("td", {}, d.participant), h("td", {}, d.split || "—"),
      h("td", {}, link(datasetHref(ids[0], d.participant, d.digest), h("code", {}, shortDigest(d.digest)), { class: "dataset-link", title: d.name + " · " + d.digest })),
      h("td", {}, d.kind || "—"), h("td", { class: "num" }, rowsText(d)),
      h("td", { class: "cols" }, columnChips(d.columns)),
      h("td", {}, drifted.has(d.participant + "\u0000" + d.split)
        ? h("span", { class: "badge drift-flag", title: "differs from another run of the project" }, "changed") : h("span", { class: "muted" }, "—")))))))
    : h("p", { class: "muted" }, "No datasets were catalogued for this run's participants.");
  const list = (label, names) => names && names.length ? h("span", { class: "drift-columns" }, h("span", { class: "muted" }, label + " "), names.map((n, i) => [i ? ", " : "", h("code", {}, n)])) : null;
  const driftBox = drift.length
    ? h("ul", { class: "drift-list", id: "drift" }, drift.map((d) => h("li", { class: "drift", dataset: { participant: d.participant, split: d.split || "", against: d.against } },
        h("b", {}, d.participant + " · " + (d.split || "—")), " differs from the ", d.against === "previous" ? "previous" : "next", " run ",
        runRef(d.run), ": ",
        d.schema_changed ? h("span", { class: "badge drift-flag" }, "schema changed") : null, " ",
        d.profile_changed ? h("span", { class: "badge" }, "statistics changed") : null, " ",
        list("added", d.columns.added), list("removed", d.columns.removed),
        list("type changed", d.columns.type_changed), list("statistics moved", d.columns.profile_changed))))
    : datasets.length ? h("p", { class: "muted", id: "no-drift" }, "No drift: every participant's data is the same as in the project's previous and next runs.") : null;
  box.dataset.state = "loaded";
  box.replaceChildren(h("h2", {}, "Data and lineage"),
    h("h3", {}, "Datasets"), table,
    drift.length ? h("h3", {}, "Drift") : null, driftBox,
    h("div", { class: "card-head lineage-head" }, h("h3", {}, "Lineage"), h("span", { class: "muted small" }, "hover or focus a node to trace its path")),
    lineageGraph(lineage));
}
// ----- the lineage graph, on a run's Overview and on a model version's page: a column per
// kind of node, left to right (rows, top to bottom, below 700 px), and every edge of the
// API's lineage.edges drawn as an SVG curve from its source box to its target box. The
// curves are redrawn whenever the graph or a column changes size or a column scrolls;
// hovering or focusing a node lights it, everything upstream and downstream, and the edges
// on those paths.
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  el.append(...children);
  return el;
}
// The distinct edges whose two ends are among the nodes.
function lineageEdges(lineage, ids) {
  const seen = new Set();
  return (lineage.edges || []).filter(([from, to]) => {
    const key = from + "\u0000" + to;
    if (!ids.has(from) || !ids.has(to) || seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
// A node and everything upstream of it (where = 1) or downstream of it (where = 0).
export function reach(edges, id, where) {
  const found = new Set([id]);
  const todo = [id];
  while (todo.length) {
    const at = todo.pop();
    for (const e of edges) {
      if (e[where] === at && !found.has(e[1 - where])) { found.add(e[1 - where]); todo.push(e[1 - where]); }
    }
  }
  return found;
}
export const modelHref = (name, version) => "models/" + path(name, version);
export const mlflowVersionHref = (name, version) => mlflowHash("models/" + enc(name) + "/versions/" + enc(version));
const mlflowRunHref = (experimentId, runId) => mlflowHash("experiments/" + enc(experimentId) + "/runs/" + enc(runId));
export const mlflowModelHref = (experimentId, modelId) => mlflowHash("experiments/" + enc(experimentId) + "/models/" + enc(modelId));
// options.current: the node this page is about (marked, and not linked to itself);
// options.linkRun: link the federated run's node to its run page.
export function lineageGraph(lineage, options) {
  const opts = options || {};
  const r = lineage.run || {};
  const experimentId = r.mlflow_experiment_id;
  const datasetsById = new Map((lineage.datasets || []).map((d) => ["dataset:" + r.collaboration + "/" + d.participant + "/" + d.digest, d]));
  const versionsById = new Map((lineage.model_versions || []).map((v) => ["model_version:" + v.name + "/" + v.version, v]));
  const modelsById = new Map((lineage.models || []).map((m) => ["model:" + m.model_id, m]));
  const participantsById = new Map((lineage.participants || []).map((p) => ["participant_run:" + p.mlflow_run_id, p]));
  const nodeBody = (n) => {
    if (n.type === "dataset") {
      const d = datasetsById.get(n.id);
      return d ? [link(datasetHref(r.collaboration, d.participant, d.digest), n.label, { class: "dataset-link" }), h("code", {}, shortDigest(d.digest))] : n.label;
    }
    if (n.type === "participant_run") {
      const p = participantsById.get(n.id);
      return [h("span", {}, n.label), p && experimentId ? external(mlflowRunHref(experimentId, p.mlflow_run_id), "MLflow ↗", { class: "small" }) : null];
    }
    if (n.type === "federated_run") {
      return [opts.linkRun ? link(runHref(r.collaboration, r.project, r.experiment, r.run), n.label, { class: "run-link" }) : h("b", {}, n.label),
        h("span", { class: "muted small" }, r.status || "")];
    }
    if (n.type === "logged_model") {
      const m = modelsById.get(n.id);
      return [experimentId && m ? external(mlflowModelHref(experimentId, m.model_id), n.label + " ↗") : h("span", {}, n.label),
        m ? h("code", {}, shortDigest(m.model_id)) : null];
    }
    const v = versionsById.get(n.id);
    if (!v) return h("span", {}, n.label);
    return [n.id === opts.current ? h("b", {}, n.label) : link(modelHref(v.name, v.version), n.label, { class: "model-version-page" }),
      h("span", { class: "node-foot" }, v.status ? h("span", { class: "muted small" }, v.status) : null,
        external(mlflowVersionHref(v.name, v.version), "MLflow ↗", { class: "small model-version-mlflow" }))];
  };
  const nodes = lineage.nodes || [];
  const edges = lineageEdges(lineage, new Set(nodes.map((n) => n.id)));
  const columns = LINEAGE_COLUMNS.map(([type, title]) => [type, title, nodes.filter((n) => n.type === type)])
    .filter(([type, , list]) => list.length || type === "model_version");
  const paths = edges.map(([from, to]) => s("path", { class: "edge", "data-from": from, "data-to": to, "marker-end": "url(#lineage-head)" }));
  const svg = s("svg", { class: "lineage-edges", "aria-hidden": "true" },
    s("defs", {}, ...["", "-lit"].map((suffix) => s("marker", { id: "lineage-head" + suffix, markerUnits: "userSpaceOnUse",
      markerWidth: "8", markerHeight: "8", refX: "7", refY: "4", orient: "auto" }, s("polygon", { points: "0,0 8,4 0,8" })))),
    s("g", {}, ...paths));
  const graph = h("div", { class: "lineage", id: "lineage", dataset: { edges: "0" } }, svg);
  for (const [type, title, list] of columns) {
    graph.append(h("div", { class: "lineage-col", dataset: { type } },
      h("div", { class: "lineage-title" }, title + (list.length > 1 ? " (" + list.length + ")" : "")),
      list.length ? list.map((n) => h("div", { class: "node node-" + type + (n.id === opts.current ? " current" : ""), tabindex: "0", dataset: { node: n.id } }, nodeBody(n)))
        : h("p", { class: "muted small", id: "no-model-versions" }, "No model version registered from this run.")));
  }
  const boxes = new Map([...graph.querySelectorAll(".node")].map((el) => [el.dataset.node, el]));

  // Each curve leaves its source's right side for its target's left side (or, stacked, the
  // bottom for the top); an end whose box is scrolled out of its column stays at the column's
  // edge. An edge that skips a column (a participant's own model, a version registered from a
  // run without a logged model) goes round the columns between instead of behind their boxes:
  // under them, or, stacked, down a gutter on the right.
  const columnEls = [...graph.querySelectorAll(".lineage-col")];
  const columnOf = new Map([...boxes].map(([id, el]) => [id, columnEls.indexOf(el.parentElement)]));
  graph.classList.toggle("has-skips", edges.some(([from, to]) => columnOf.get(to) - columnOf.get(from) > 1));
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  function place(el) {
    const b = el.getBoundingClientRect(), col = el.parentElement.getBoundingClientRect();
    return { left: b.left, right: b.right, top: clamp(b.top, col.top, col.bottom), bottom: clamp(b.bottom, col.top, col.bottom),
      cx: clamp((b.left + b.right) / 2, col.left, col.right), cy: clamp((b.top + b.bottom) / 2, col.top, col.bottom) };
  }
  const f = (v) => v.toFixed(1);
  // A polyline with rounded corners.
  function rounded(points, radius) {
    let d = "M" + f(points[0][0]) + " " + f(points[0][1]);
    for (let i = 1; i < points.length - 1; i++) {
      const [px, py] = points[i - 1], [x, y] = points[i], [nx, ny] = points[i + 1];
      const l1 = Math.hypot(x - px, y - py) || 1, l2 = Math.hypot(nx - x, ny - y) || 1;
      const k = Math.min(radius, l1 / 2, l2 / 2);
      d += "L" + f(x - (x - px) / l1 * k) + " " + f(y - (y - py) / l1 * k)
        + "Q" + f(x) + " " + f(y) + " " + f(x + (nx - x) / l2 * k) + " " + f(y + (ny - y) / l2 * k);
    }
    const last = points[points.length - 1];
    return d + "L" + f(last[0]) + " " + f(last[1]);
  }
  let pending = 0;
  function draw() {
    pending = 0;
    if (!graph.isConnected) { observer.disconnect(); return; }
    const g = graph.getBoundingClientRect();
    if (!g.width) return;  // hidden (another tab): drawn when shown
    svg.setAttribute("width", String(g.width));
    svg.setAttribute("height", String(g.height));
    const cols = columnEls.map((c) => c.getBoundingClientRect());
    const shown = (i) => {  // the bottom of a column's last box in view
      const last = columnEls[i].lastElementChild;
      return Math.min(cols[i].bottom, last.getBoundingClientRect().bottom);
    };
    const across = cols.length < 2 || cols[1].left >= cols[0].right - 2;
    let skips = 0, lowest = 0;
    edges.forEach(([from, to], i) => {
      const a = place(boxes.get(from)), b = place(boxes.get(to));
      const ca = columnOf.get(from), cb = columnOf.get(to);
      let d;
      if (cb - ca > 1 && across) {
        const lane = Math.max(...cols.slice(ca + 1, cb).map((_, k) => shown(ca + 1 + k))) - g.top + 12 + 6 * skips++;
        const gx1 = (cols[ca].right + cols[ca + 1].left) / 2 - g.left, gx2 = (cols[cb - 1].right + cols[cb].left) / 2 - g.left;
        lowest = Math.max(lowest, lane);
        d = rounded([[a.right - g.left, a.cy - g.top], [gx1, a.cy - g.top], [gx1, lane], [gx2, lane], [gx2, b.cy - g.top],
          [b.left - g.left - 1, b.cy - g.top]], 8);
      } else if (cb - ca > 1) {
        const x = g.width - 7 - 4 * skips++, y1 = cols[ca].bottom - g.top + 10, y2 = cols[cb].top - g.top - 10;
        d = rounded([[a.cx - g.left, a.bottom - g.top], [a.cx - g.left, y1], [x, y1], [x, y2], [b.cx - g.left, y2],
          [b.cx - g.left, b.top - g.top - 1]], 8);
      } else if (across) {
        const x1 = a.right - g.left, y1 = a.cy - g.top, x2 = b.left - g.left - 1, y2 = b.cy - g.top;
        const dx = Math.max(12, (x2 - x1) / 2);
        d = `M${f(x1)} ${f(y1)}C${f(x1 + dx)} ${f(y1)} ${f(x2 - dx)} ${f(y2)} ${f(x2)} ${f(y2)}`;
      } else {
        const x1 = a.cx - g.left, y1 = a.bottom - g.top, x2 = b.cx - g.left, y2 = b.top - g.top - 1;
        const dy = Math.max(12, (y2 - y1) / 2);
        d = `M${f(x1)} ${f(y1)}C${f(x1)} ${f(y1 + dy)} ${f(x2)} ${f(y2 - dy)} ${f(x2)} ${f(y2)}`;
      }
      paths[i].setAttribute("d", d);
    });
    // Room under the columns for the lanes that pass below them (a no-op once it is there).
    const content = Math.max(...cols.map((c) => c.bottom)) - g.top;
    const room = across && lowest ? Math.max(0, Math.ceil(lowest + 6 - content)) + "px" : "";
    if (graph.style.paddingBottom !== room) graph.style.paddingBottom = room;
    graph.dataset.edges = String(edges.length);
    graph.dataset.drawn = String((Number(graph.dataset.drawn) || 0) + 1);
  }
  const redraw = () => { if (!pending) pending = requestAnimationFrame(draw); };
  const observer = new ResizeObserver(redraw);
  observer.observe(graph);
  graph.querySelectorAll(".lineage-col").forEach((col) => observer.observe(col));
  graph.addEventListener("scroll", redraw, true);  // a column's own scrolling

  // Tracing: a node lights up everything upstream and downstream of it, and the edges between.
  const trace = (id) => {
    const up = reach(edges, id, 1), down = reach(edges, id, 0);
    graph.classList.add("tracing");
    boxes.forEach((el, node) => el.classList.toggle("lit", up.has(node) || down.has(node)));
    edges.forEach(([from, to], i) => {
      const lit = up.has(to) || down.has(from);
      paths[i].classList.toggle("lit", lit);
      paths[i].setAttribute("marker-end", lit ? "url(#lineage-head-lit)" : "url(#lineage-head)");
    });
  };
  const untrace = () => {
    graph.classList.remove("tracing");
    graph.querySelectorAll(".lit").forEach((el) => el.classList.remove("lit"));
    paths.forEach((p) => p.setAttribute("marker-end", "url(#lineage-head)"));
  };
  graph.addEventListener("mouseover", (ev) => { const n = ev.target.closest(".node"); if (n) trace(n.dataset.node); });
  graph.addEventListener("focusin", (ev) => { const n = ev.target.closest(".node"); if (n) trace(n.dataset.node); });
  graph.addEventListener("mouseleave", untrace);
  graph.addEventListener("focusout", untrace);
  return graph;
}
