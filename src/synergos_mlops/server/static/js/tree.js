// The sidebar: collapsing, the collaborations → projects → experiments → runs tree, breadcrumbs.
import { API, getJSON, path, ROOT, runHref } from "./api.js";
import { h, link } from "./dom.js";
import { plural } from "./format.js";
import { route } from "./main.js";
import { state } from "./state.js";

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
      try { state.tree = (await getJSON(new URL("collaborations", API))).collaborations; drawTree(); } catch (err) { /* next time */ }
      watchStoreReading();
    }, READING_POLL);
  } else if (!notice.hidden) {
    notice.hidden = true;
    try { state.tree = (await getJSON(new URL("collaborations", API))).collaborations; drawTree(); } catch (err) { /* shown as is */ }
  }
}
export async function loadTree() {
  if (readingTimer === null) watchStoreReading();
  try {
    state.tree = (await getJSON(new URL("collaborations", API))).collaborations;
  } catch (err) {
    document.getElementById("tree").replaceChildren(
      h("p", { class: "error pad", id: "tree-error" }, "could not load the runs: " + (err.message || err)));
    throw err;
  }
  drawTree();
}
export function drawTree() {
  const box = document.getElementById("tree");
  const filter = document.getElementById("tree-filter").value.trim().toLowerCase();
  const { view, ids } = route();
  box.replaceChildren();
  if (!state.tree.length) {
    box.append(h("p", { class: "muted pad" }, "No federated runs yet."));
    return;
  }
  for (const c of state.tree) {
    const cNode = h("details", { open: true, role: "treeitem" },
      h("summary", {}, h("span", { class: "kind" }, "collab"), link("c/" + path(c.id), c.id)));
    for (const p of c.projects) {
      const pNode = h("details", { open: true, role: "treeitem" },
        h("summary", {}, h("span", { class: "kind" }, "project"), link("c/" + path(c.id, p.id), p.id)));
      for (const e of p.experiments) {
        const eNode = h("details", { open: true, role: "treeitem" },
          h("summary", {}, h("span", { class: "kind" }, "exp"), link("c/" + path(c.id, p.id, e.id), e.id)));
        for (const r of e.runs) {
          const hay = [c.id, p.id, e.id, r.id].join(" ").toLowerCase();
          if (filter && !hay.includes(filter)) continue;
          const selected = view === "run" && ids.join("\u0000") === [c.id, p.id, e.id, r.id].join("\u0000");
          eNode.append(link(runHref(c.id, p.id, e.id, r.id),
            [h("span", { class: "dot " + (r.status || "") }), h("span", { class: "name" }, r.id),
             h("span", { class: "count", title: plural(r.participant_count, "participant") }, r.participant_count + " ◆")],
            { class: "run" + (selected ? " selected" : ""), role: "treeitem", title: r.id + " · " + (r.status || "") }));
        }
        pNode.append(eNode);
      }
      cNode.append(pNode);
    }
    box.append(cNode);
  }
}
document.getElementById("tree-filter").addEventListener("input", () => state.tree && drawTree());

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
