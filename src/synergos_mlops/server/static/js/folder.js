// The overview and a collaboration's, project's or experiment's page: its studies and runs.
import { API, enc, getJSON, path, runHref } from "./api.js";
import { h, link, stat } from "./dom.js";
import { duration, fmtTime } from "./format.js";
import { go } from "./main.js";
import { crumbs, drawTree } from "./tree.js";
import { experimentsUnder, loadPage, pageOf, shownRuns } from "./treedata.js";

// ---------- overview and folder views ----------
// Runs ticked in a runs table, compared on their own page (compare?run=c/p/e/r&run=...).
export const MAX_COMPARED = 10;
const compareHref = (refs) => "compare?" + refs.map((r) => "run=" + r.map(enc).join("/")).join("&");
export function compareButton(table) {
  const button = h("button", { class: "btn", id: "compare-runs", disabled: true,
    onclick: () => go(compareHref([...table.querySelectorAll("input.pick:checked")].map((b) => JSON.parse(b.value)))) },
    "Compare");
  table.addEventListener("change", () => {
    const n = table.querySelectorAll("input.pick:checked").length;
    button.disabled = n < 2 || n > MAX_COMPARED;
    button.textContent = n ? "Compare " + n : "Compare";
    button.title = n > MAX_COMPARED ? "at most " + MAX_COMPARED + " runs" : "tick 2 to " + MAX_COMPARED + " runs";
  });
  return button;
}
function runsTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No runs here yet.");
  return h("div", { class: "scroll" }, h("table", { id: "runs-table" },
    h("thead", {}, h("tr", {}, h("th", { title: "compare" }, ""), ["Run", "Collaboration / project / experiment", "Status", "Participants",
      "Started", "Duration"].map((t, i) => h("th", { class: i === 3 ? "num" : "" }, t)))),
    h("tbody", {}, rows.map(([c, p, e, r]) => h("tr", {},
      h("td", {}, h("input", { type: "checkbox", class: "pick", value: JSON.stringify([c, p, e, r.id]),
        "aria-label": "compare " + r.id })),
      h("td", {}, link(runHref(c, p, e, r.id), r.id)),
      h("td", { class: "muted" }, [c, p, e].join(" / ")),
      h("td", {}, h("span", { class: "badge " + (r.status || "") }, r.status || "—")),
      h("td", { class: "num" }, r.participant_count),
      h("td", {}, fmtTime(r.start_time)),
      h("td", {}, duration(r.start_time, r.end_time) || "—"))))));
}
// A node's page counts from the tree's run counts; an experiment's page lists its runs a page at a
// time (newest first among those read), a collaboration's or project's its experiments.
export function renderFolder(main, ids) {
  crumbs(ids, false);
  const rows = experimentsUnder(ids);
  const kinds = ["collaboration", "project", "experiment"];
  if (rows === null) {
    main.append(h("div", { class: "error" }, kinds[ids.length - 1] + " " + JSON.stringify(ids[ids.length - 1]) + " not found"));
    return;
  }
  const title = ids.length ? ids[ids.length - 1] : "All federated runs";
  const runs = rows.reduce((n, r) => n + (r[2].run_count || 0), 0);
  main.append(
    h("h1", {}, title),
    h("div", { class: "sub" }, ids.length ? kinds[ids.length - 1] : "Collaborations → projects → experiments → runs"),
    h("div", { class: "stats" },
      ids.length ? null : stat(new Set(rows.map((r) => r[0])).size, "collaboration"),
      ids.length > 1 ? null : stat(new Set(rows.map((r) => r[0] + "\u0000" + r[1])).size, "project"),
      ids.length > 2 ? null : stat(rows.length, "experiment"),
      stat(runs, "run")),
    studiesCard(ids),
    ids.length ? null : latestRunsCard(),
    ids.length === 3 ? experimentRunsCard(ids) : experimentsCard(rows));
}
// The overview's newest runs of every experiment, and how many run now (GET /runs).
const LATEST = 10;
function latestRunsCard() {
  const card = h("div", { id: "latest-runs" }, h("p", { class: "muted" }, "Loading the latest runs…"));
  getJSON(new URL("runs?limit=" + LATEST, API)).then((body) => {
    const rows = body.runs.map((r) => [r.collaboration, r.project, r.experiment, r]);
    const table = runsTable(rows);
    const running = h("span", { class: "muted small", id: "running-count" },
      body.running.toLocaleString() + " running of " + body.run_count.toLocaleString());
    card.replaceChildren(h("div", { class: "card" }, h("div", { class: "card-head" },
      h("h2", {}, "Latest runs"), running, rows.length > 1 ? compareButton(table) : null), table));
  }).catch((err) => {
    card.replaceChildren(h("p", { class: "error" }, "could not load the latest runs: " + (err.message || err)));
  });
  return card;
}
function experimentsCard(rows) {
  const body = rows.length ? h("div", { class: "scroll" }, h("table", { id: "experiments-table" },
    h("thead", {}, h("tr", {}, ["Experiment", "Collaboration / project", "Runs"].map((t, i) => h("th", { class: i === 2 ? "num" : "" }, t)))),
    h("tbody", {}, rows.map(([c, p, e]) => h("tr", {},
      h("td", {}, link("c/" + path(c, p, e.id), e.id)),
      h("td", { class: "muted" }, c + " / " + p),
      h("td", { class: "num" }, e.run_count || 0))))))
    : h("p", { class: "muted" }, "No runs here yet.");
  return h("div", { class: "card" }, h("h2", {}, "Experiments"), body);
}
function experimentRunsCard([c, p, e]) {
  const card = h("div", { id: "experiment-runs" }, h("p", { class: "muted" }, "Loading runs…"));
  const fill = (page) => {
    const runs = [...shownRuns(page)].reverse().map((r) => [c, p, e, r]);
    const more = page.next === null ? null : h("button", { class: "btn more-runs", type: "button",
      onclick: (ev) => { ev.target.disabled = true; loadPage(c, p, e).then((read) => { fill(read); drawTree(); }); } },
    "Show more runs (" + (page.count - shownRuns(page).length).toLocaleString() + " more)");
    card.replaceChildren(...[runsCard(runs), page.error ? h("p", { class: "error" }, "could not load the runs: " + page.error) : null, more]
      .filter(Boolean));
  };
  const page = pageOf(c, p, e);
  (page && !page.loading ? Promise.resolve(page) : loadPage(c, p, e)).then(fill);
  return card;
}
function runsCard(rows) {
  const table = runsTable(rows);
  return h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Runs"),
    rows.length > 1 ? compareButton(table) : null), table);
}
// The studies under a node of the tree, fetched beside it; nothing shown when there are none.
function studiesCard(ids) {
  const box = h("div", { class: "card", id: "studies", hidden: true });
  const url = new URL("studies", API);
  ["collaboration", "project", "experiment"].forEach((k, i) => { if (ids[i] !== undefined) url.searchParams.set(k, ids[i]); });
  getJSON(url).then((body) => {
    if (!body.studies.length) return;
    box.hidden = false;
    box.append(h("h2", {}, "Studies"), h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Study", "Experiment", "Metric", "Trials", "Finished", "Running", "Queued"]
        .map((t, i) => h("th", { class: i > 2 ? "num" : "" }, t)))),
      h("tbody", {}, body.studies.map((st) => h("tr", {},
        h("td", {}, link("studies/" + path(st.collaboration, st.project, st.experiment, st.study), st.study)),
        h("td", { class: "muted" }, [st.collaboration, st.project, st.experiment].join(" / ")),
        h("td", {}, st.metric || "—"),
        h("td", { class: "num" }, st.trial_count),
        h("td", { class: "num" }, st.counts.FINISHED),
        h("td", { class: "num" }, st.counts.RUNNING),
        h("td", { class: "num" }, st.counts.SCHEDULED)))))));
  }).catch((err) => {
    box.hidden = false;
    box.append(h("p", { class: "error" }, "could not load the studies: " + (err.message || err)));
  });
  return box;
}
