/* Synergos Command Station: a federation-aware view of runs kept in MLflow.
 * Plain ES modules (this one routes), no build step. Every view has its own URL under /synergos/ built from the ids:
 *   ./                         overview
 *   c/<c>[/<p>[/<e>]]          a collaboration, project or experiment: its runs
 *   runs/<c>/<p>/<e>/<r>       one federated run
 *   studies/<c>/<p>/<e>/<s>    one hyperparameter-tuning study (its trials are runs)
 *   compare?run=<c>/<p>/<e>/<r>&run=...   2 to 10 runs side by side
 *   catalogue                  every dataset by collaboration, participant and split
 *   catalogue/<c>/<participant>/<digest>   one dataset: its columns, profile, runs and the models it reached
 *   models/<name>/<version>    a registered model version and the data that trained it
 * The JSON comes from ../api/synergos/v1/.
 */
import { API, BASE, getJSON, path } from "./api.js";
import { renderCatalogue } from "./catalogue.js";
import { renderCompare } from "./compare.js";
import { renderDataset } from "./dataset.js";
import { h } from "./dom.js";
import { renderFolder } from "./folder.js";
import { stopCharts } from "./metrics.js";
import { firstComing, noFirst } from "./priority.js";
import { renderModelVersion } from "./models.js";
import { renderRun } from "./run.js";
import { state } from "./state.js";
import { renderStudy } from "./studies.js";
import { showTab, stopTabs, tabOfUrl } from "./tabs.js";
import { crumbs, drawTree, loadTree, NARROW, setSidebar } from "./tree.js";
import { ensureRun } from "./treedata.js";

// ---------- routing ----------
export function route() {
  const rel = location.pathname.startsWith(BASE.pathname)
    ? location.pathname.slice(BASE.pathname.length) : "";
  let parts;
  try {
    parts = rel.split("/").filter(Boolean).map(decodeURIComponent);
  } catch (err) {
    return { view: "home", ids: [] };  // a malformed URL: show the overview
  }
  if (parts[0] === "runs" && parts.length === 5) return { view: "run", ids: parts.slice(1) };
  if (parts[0] === "studies" && parts.length === 5) return { view: "study", ids: parts.slice(1) };
  if (parts[0] === "compare" && parts.length === 1) {
    return { view: "compare", ids: new URLSearchParams(location.search).getAll("run") };
  }
  if (parts[0] === "c" && parts.length >= 2 && parts.length <= 4) return { view: "node", ids: parts.slice(1) };
  if (parts[0] === "catalogue" && parts.length === 1) return { view: "catalogue", ids: [] };
  if (parts[0] === "catalogue" && parts.length === 4) return { view: "dataset", ids: parts.slice(1) };
  if (parts[0] === "models" && parts.length === 3) return { view: "model", ids: parts.slice(1) };
  return { view: "home", ids: [] };
}
export function go(href) {
  history.pushState(null, "", new URL(href, BASE));
  render();
}
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-nav]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  if (NARROW.matches && a.closest("#sidebar")) setSidebar(false, false);
  go(a.getAttribute("href"));
});
// A change of the tab alone (#logs, back and forward between tabs) switches the tab in place.
let rendered = null;
window.addEventListener("popstate", () => {
  if (route().view === "run" && rendered === location.pathname + location.search) showTab(tabOfUrl());
  else render();
});

// ---------- render ----------
async function render() {
  const main = document.getElementById("main");
  const { view, ids } = route();
  // A run's JSON is asked for at once, beside the tree's, not after it.
  const runJSON = view === "run" ? getJSON(new URL("runs/" + path(...ids), API)) : null;
  if (runJSON) runJSON.catch(() => {});  // its error is shown below, once awaited
  noFirst();  // what waited on the view left goes now
  if (view === "run") firstComing();  // its charts' series go first (priority.js)
  try {
    // A run's page is built as soon as its JSON is here, beside the tree (which shows its own
    // error); every other view waits for the tree.
    const tree = state.tree ? Promise.resolve(drawTree()) : loadTree();
    if (view !== "run") await tree;
    main.replaceChildren();
    main.scrollTop = 0;
    stopCharts();
    stopTabs();
    rendered = location.pathname + location.search;
    if (view === "run") {
      main.append(h("p", { class: "muted" }, "Loading run…"));
      // The run's experiment is read into the tree (its first page, and the run if further on).
      tree.then(() => ensureRun(...ids)).then(() => route().view === "run" && drawTree()).catch(() => {});
      await renderRun(main, ids, runJSON);
      document.title = ids[3] + " · Synergos Command Station";
    } else if (view === "study") {
      main.append(h("p", { class: "muted" }, "Loading study…"));
      await renderStudy(main, ids);
      document.title = ids[3] + " (study) · Synergos Command Station";
    } else if (view === "catalogue") {
      main.append(h("p", { class: "muted", id: "catalogue-loading" }, "Loading the catalogue…"));
      await renderCatalogue(main);
      document.title = "Data catalogue · Synergos Command Station";
    } else if (view === "dataset") {
      main.append(h("p", { class: "muted", id: "dataset-loading" }, "Loading the dataset…"));
      await renderDataset(main, ids);
      document.title = ids[1] + " dataset · Synergos Command Station";
    } else if (view === "model") {
      main.append(h("p", { class: "muted", id: "model-version-loading" }, "Loading the model version…"));
      await renderModelVersion(main, ids);
      document.title = ids[0] + " v" + ids[1] + " · Synergos Command Station";
    } else if (view === "compare") {
      main.append(h("p", { class: "muted" }, "Loading runs…"));
      await renderCompare(main, ids);
      document.title = "Compare " + ids.length + " runs · Synergos Command Station";
    } else {
      crumbs([], false);
      renderFolder(main, ids);
      document.title = (ids.length ? ids[ids.length - 1] + " · " : "") + "Synergos Command Station";
    }
  } catch (err) {
    noFirst();
    main.replaceChildren(h("div", { class: "error", id: "error" }, String(err.message || err)));
  }
}

render();
