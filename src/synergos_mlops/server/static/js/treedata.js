// What the tree is made of, loaded a level at a time so that its cost stays flat as the store
// grows: collaborations → projects → experiments with their run counts (no runs), each opened
// experiment's runs a page of 50 at a time, and a search's answer (at most 200 runs).
import { API, getJSON } from "./api.js";
import { afterFirst } from "./priority.js";
import { state } from "./state.js";

export const PAGE = 50;
// An experiment's key in state.pages and state.open.
export const key = (c, p, e) => JSON.stringify([c, p, e]);
const treeUrl = (params) => {
  const url = new URL("collaborations", API);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v));
  return url;
};

// The levels down to experiments; the pages of runs already read are read again when opened.
export async function loadLevels() {
  state.tree = (await getJSON(treeUrl({ depth: "experiments" }))).collaborations;
  state.pages = {};
}

// The one experiment of an answer under collaboration, project and experiment (null if none).
function onlyExperiment(answer) {
  const c = answer.collaborations[0];
  const p = c && c.projects[0];
  return (p && p.experiments[0]) || null;
}

// The loaded runs of an experiment: { runs (in the server's order, by start), next (the next
// page's offset, or null), count, error, pinned (a run linked to that no page read holds yet) }.
export const pageOf = (c, p, e) => state.pages[key(c, p, e)] || null;
export const shownRuns = (page) =>
  page.pinned && !page.runs.some((r) => r.id === page.pinned.id) ? [...page.runs, page.pinned] : page.runs;

// Reads the next page of an experiment's runs (the first when none is read) into state.pages.
export function loadPage(c, p, e) {
  const k = key(c, p, e);
  const page = state.pages[k] || (state.pages[k] = { runs: [], next: 0, count: null, error: null, loading: null });
  if (page.loading) return page.loading;
  if (page.next === null) return Promise.resolve(page);
  page.loading = (async () => {
    try {
      await afterFirst();  // a run page's charts first
      const params = { collaboration: c, project: p, experiment: e, limit: PAGE, offset: page.next };
      const exp = onlyExperiment(await getJSON(treeUrl(params)));
      const seen = new Set(page.runs.map((r) => r.id));
      page.runs.push(...(exp ? exp.runs : []).filter((r) => !seen.has(r.id)));
      page.count = exp ? exp.run_count : 0;
      page.next = exp && exp.next_offset !== undefined ? exp.next_offset : null;
      page.error = null;
    } catch (err) {
      page.error = err.message || String(err);
    } finally {
      page.loading = null;
    }
    return page;
  })();
  return page.loading;
}

// Makes sure a run shows in its experiment's loaded runs (a deep link to a run past the first
// page): the first page, then, when the run is not on it, the run alone through a search.
export async function ensureRun(c, p, e, r) {
  state.open.add(key(c, p, e));
  let page = pageOf(c, p, e);
  if (!page || page.loading) page = await loadPage(c, p, e);
  if (page.error || page.next === null || shownRuns(page).some((run) => run.id === r)) return page;
  try {
    const answer = await getJSON(treeUrl({ collaboration: c, project: p, experiment: e, search: r }));
    const exp = onlyExperiment(answer);
    const run = exp && (exp.runs || []).find((x) => x.id === r);
    if (run) page.pinned = run;
  } catch (err) { /* the run page says what is wrong */ }
  return page;
}

// The runs whose ids (or their collaboration's, project's or experiment's) hold the text.
export const searchTree = (text) => getJSON(treeUrl({ search: text }));

// The experiments under a node of the tree (ids: none, a collaboration, a project), as
// [collaboration, project, experiment] rows; null when the node is not in the tree.
export function experimentsUnder(ids) {
  const rows = [];
  let found = ids.length === 0;
  for (const c of state.tree) {
    if (ids[0] !== undefined && c.id !== ids[0]) continue;
    if (ids.length === 1) found = true;
    for (const p of c.projects) {
      if (ids[1] !== undefined && p.id !== ids[1]) continue;
      if (ids.length === 2) found = true;
      for (const e of p.experiments) {
        if (ids[2] !== undefined && e.id !== ids[2]) continue;
        found = true;
        rows.push([c.id, p.id, e]);
      }
    }
  }
  return found ? rows : null;
}
