// The sidebar: collapsing, the collaborations → projects → experiments → runs tree, breadcrumbs.
import { getJSON, path, ROOT, runHref } from "./api.js";
import { h, link } from "./dom.js";
import { plural } from "./format.js";
import { route } from "./main.js";
import { state } from "./state.js";
import { key, loadLevels, loadPage, pageOf, searchTree, shownRuns } from "./treedata.js";

// ---------- sidebar ----------
// Collapsed or open by the toggle; the choice is remembered for wide screens. Narrow screens
// (a phone, a small iframe) start collapsed and open the sidebar over the page.
export const NARROW = window.matchMedia("(max-width: 899px)");
const SIDEBAR_KEY = "synergos.sidebar";
function remembered() {
  try { return localStorage.getItem(SIDEBAR_KEY); } catch (err) { return null; }
}
export function setSidebar(open, remember) {
  document.body.classList.toggle("sidebar-collapsed", !open);
  document.getElementById("sidebar-toggle").setAttribute("aria-expanded", String(open));
  if (remember && !NARROW.matches) {
    try { localStorage.setItem(SIDEBAR_KEY, open ? "open" : "collapsed"); } catch (err) { /* private mode */ }
  }
}
const initialSidebar = () => setSidebar(!NARROW.matches && remembered() !== "collapsed", false);
initialSidebar();
NARROW.addEventListener("change", initialSidebar);
document.getElementById("sidebar-toggle").addEventListener("click", () =>
  setSidebar(document.body.classList.contains("sidebar-collapsed"), true));

// ---------- tree ----------
// While the server's first pass over a TTP's file store runs (a minute for 1,000 runs), the
// tree is partial: a notice says how far the pass is, and the tree is read again every 2 s
// until the pass ends (GET /health's file_store.reading).
const READING_POLL = 2000;
let readingTimer = null;
async function watchStoreReading() {
  readingTimer = null;
  const notice = document.getElementById("store-reading");
  let reading = null;
  try {
    const health = await getJSON(new URL("health", ROOT));
    reading = (health.file_store && health.file_store.reading) || null;
  } catch (err) { /* no word on the store: no notice */ }
  if (reading) {
    notice.hidden = false;
    notice.dataset.read = String(reading.runs_read);
    notice.dataset.found = String(reading.runs_found);
    notice.textContent = "Reading the TTP's file store: " + reading.runs_read.toLocaleString() + " of "
      + plural(reading.runs_found, "run").replace(/^\d+/, (n) => Number(n).toLocaleString())
      + " read so far; the tree fills in as they are.";
    readingTimer = setTimeout(async () => {
      try { await loadLevels(); drawTree(); } catch (err) { /* next time */ }
      watchStoreReading();
    }, READING_POLL);
  } else if (!notice.hidden) {
    notice.hidden = true;
    try { await loadLevels(); drawTree(); } catch (err) { /* shown as is */ }
  }
}
export async function loadTree() {
  if (readingTimer === null) watchStoreReading();
  try {
    await loadLevels();
  } catch (err) {
    document.getElementById("tree").replaceChildren(
      h("p", { class: "error pad", id: "tree-error" }, "could not load the runs: " + (err.message || err)));
    throw err;
  }
  drawTree();
}
// A run's row in the tree, selected when it is the run shown.
function runRow(c, p, e, r) {
  const { view, ids } = route();
  const selected = view === "run" && ids.join("\u0000") === [c, p, e, r.id].join("\u0000");
  return link(runHref(c, p, e, r.id),
    [h("span", { class: "dot " + (r.status || "") }), h("span", { class: "name" }, r.id),
     h("span", { class: "count", title: plural(r.participant_count, "participant") }, r.participant_count + " ◆")],
    { class: "run" + (selected ? " selected" : ""), role: "treeitem", title: r.id + " · " + (r.status || "") });
}
const summary = (kind, href, id, count) => h("summary", {}, h("span", { class: "kind" }, kind), link(href, id),
  count === undefined ? null : h("span", { class: "count", title: plural(count, "run") }, count));
// An opened experiment's runs as read so far, and a "more" button while pages follow.
function fillExperiment(node, c, p, e) {
  [...node.children].slice(1).forEach((el) => el.remove());
  const page = pageOf(c, p, e);
  const refill = () => loadPage(c, p, e).then(() => node.isConnected && fillExperiment(node, c, p, e));
  if (!page || (page.loading && !page.runs.length)) {
    node.append(h("p", { class: "muted tree-note" }, "loading…"));
    if (!page) refill();
    else page.loading.then(() => node.isConnected && fillExperiment(node, c, p, e));
    return;
  }
  for (const r of shownRuns(page)) node.append(runRow(c, p, e, r));
  if (page.error) node.append(h("p", { class: "error tree-note" }, "could not load the runs: " + page.error));
  if (page.next !== null) {
    const left = page.count === null ? "" : " (" + (page.count - shownRuns(page).length).toLocaleString() + " more)";
    node.append(h("button", { class: "btn more-runs", type: "button", disabled: Boolean(page.loading),
      onclick: (ev) => { ev.target.disabled = true; ev.target.textContent = "loading…"; refill(); } },
    page.loading ? "loading…" : "Show more runs" + left));
  }
}
export function drawTree() {
  const box = document.getElementById("tree");
  const { view, ids } = route();
  if (view === "run" || (view === "node" && ids.length === 3)) state.open.add(key(ids[0], ids[1], ids[2]));
  box.replaceChildren();
  if (state.search) return drawSearch(box);
  delete box.dataset.search;
  if (!state.tree.length) {
    box.append(h("p", { class: "muted pad" }, "No federated runs yet."));
    return;
  }
  for (const c of state.tree) {
    const cNode = h("details", { open: true, role: "treeitem" }, summary("collab", "c/" + path(c.id), c.id));
    for (const p of c.projects) {
      const pNode = h("details", { open: true, role: "treeitem" }, summary("project", "c/" + path(c.id, p.id), p.id));
      for (const e of p.experiments) {
        const k = key(c.id, p.id, e.id);
        const eNode = h("details", { open: state.open.has(k), role: "treeitem", class: "experiment", "data-path": path(c.id, p.id, e.id) },
          summary("exp", "c/" + path(c.id, p.id, e.id), e.id, e.run_count));
        eNode.addEventListener("toggle", () => {
          if (!eNode.open) { state.open.delete(k); return; }
          state.open.add(k);
          if (eNode.children.length === 1) fillExperiment(eNode, c.id, p.id, e.id);
        });
        if (eNode.open) fillExperiment(eNode, c.id, p.id, e.id);
        pNode.append(eNode);
      }
      cNode.append(pNode);
    }
    box.append(cNode);
  }
}
// A search's answer: the runs found, under their experiments, all open; and whether it was cut.
function drawSearch(box) {
  const { text, answer, error } = state.search;
  box.dataset.search = text;
  if (error) return box.append(h("p", { class: "error pad", id: "tree-search-error" }, "could not search the runs: " + error));
  if (!answer) return box.append(h("p", { class: "muted pad" }, "Searching…"));
  if (answer.truncated) {
    box.append(h("p", { class: "muted pad", id: "tree-truncated" },
      "Only the first " + SEARCH_SHOWN + " runs found are shown: type more to narrow the search."));
  }
  let shown = 0;
  for (const c of answer.collaborations) {
    const cNode = h("details", { open: true, role: "treeitem" }, summary("collab", "c/" + path(c.id), c.id));
    for (const p of c.projects) {
      const pNode = h("details", { open: true, role: "treeitem" }, summary("project", "c/" + path(c.id, p.id), p.id));
      for (const e of p.experiments) {
        const eNode = h("details", { open: true, role: "treeitem", class: "experiment" }, summary("exp", "c/" + path(c.id, p.id, e.id), e.id));
        for (const r of e.runs || []) { eNode.append(runRow(c.id, p.id, e.id, r)); shown++; }
        pNode.append(eNode);
      }
      cNode.append(pNode);
    }
    box.append(cNode);
  }
  if (!shown) box.append(h("p", { class: "muted pad", id: "tree-no-match" }, "No runs match " + JSON.stringify(text) + "."));
}
// The filter box searches through the server, 250 ms after the last key; empty, it shows the levels again.
const SEARCH_SHOWN = 200;
let searchTimer = null;
let searchSeq = 0;
document.getElementById("tree-filter").addEventListener("input", (ev) => {
  clearTimeout(searchTimer);
  const text = ev.target.value.trim();
  const seq = ++searchSeq;
  if (!text) {
    state.search = null;
    if (state.tree) drawTree();
    return;
  }
  searchTimer = setTimeout(async () => {
    let answer = null;
    let error = null;
    try { answer = await searchTree(text); } catch (err) { error = err.message || String(err); }
    if (seq !== searchSeq) return;  // a later key or an emptied box won
    state.search = { text, answer, error };
    if (state.tree) drawTree();
  }, 250);
});

// The steps of a collaboration, project and experiment as [text, href] pairs.
export const folderSteps = (ids) => ids.map((id, i) => [id, "c/" + path(...ids.slice(0, i + 1))]);
export function crumbs(ids, runView) {
  const box = document.getElementById("crumbs");
  box.replaceChildren();
  const names = ["c", "c", "c", "runs"];
  ids.forEach((id, i) => {
    if (i) box.append(h("span", { class: "sep" }, "/"));
    const last = i === ids.length - 1;
    if (last) box.append(h("span", { class: "here" }, id));
    else box.append(link((runView && i === 3 ? names[3] : "c") + "/" + path(...ids.slice(0, i + 1)), id));
  });
}

export function catalogueCrumbs(parts) {
  const box = document.getElementById("crumbs");
  box.replaceChildren();
  parts.forEach(([text, href], i) => {
    if (i) box.append(h("span", { class: "sep" }, "/"));
    box.append(href ? link(href, text) : h("span", { class: "here" }, text));
  });
}
