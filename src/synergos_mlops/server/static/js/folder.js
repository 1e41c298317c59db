// The overview and a collaboration's, project's or experiment's page: its studies and runs.
import { API, enc, getJSON, path, runHref } from "./api.js";
import { h, link, stat } from "./dom.js";
import { duration, fmtTime } from "./format.js";
import { go } from "./main.js";
import { state } from "./state.js";
import { crumbs } from "./tree.js";

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
function flatRuns(ids) {
  const rows = [];
  for (const c of state.tree) {
    if (ids[0] !== undefined && c.id !== ids[0]) continue;
    for (const p of c.projects) {
      if (ids[1] !== undefined && p.id !== ids[1]) continue;
      for (const e of p.experiments) {
        if (ids[2] !== undefined && e.id !== ids[2]) continue;
        for (const r of e.runs) rows.push([c.id, p.id, e.id, r]);
      }
    }
  }
  return rows.sort((a, b) => (b[3].start_time || "").localeCompare(a[3].start_time || ""));
}
export function renderFolder(main, ids) {
  crumbs(ids, false);
  const rows = flatRuns(ids);
  const kinds = ["collaboration", "project", "experiment"];
  if (ids.length && !rows.length && !findNode(ids)) {
    main.append(h("div", { class: "error" }, kinds[ids.length - 1] + " " + JSON.stringify(ids[ids.length - 1]) + " not found"));
    return;
  }
  const title = ids.length ? ids[ids.length - 1] : "All federated runs";
  const collabs = new Set(rows.map((r) => r[0])).size;
  const participants = rows.reduce((n, r) => n + r[3].participant_count, 0);
  main.append(
    h("h1", {}, title),
    h("div", { class: "sub" }, ids.length ? kinds[ids.length - 1] : "Collaborations → projects → experiments → runs"),
    h("div", { class: "stats" },
      ids.length ? null : stat(collabs, "collaboration"),
      ids.length > 1 ? null : stat(new Set(rows.map((r) => r[0] + "\u0000" + r[1])).size, "project"),
      stat(rows.length, "run"),
      stat(rows.filter((r) => r[3].status === "RUNNING").length, "running", "running"),
      stat(participants, "participant run")),
    studiesCard(ids),
    runsCard(rows));
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
function findNode(ids) {
  let level = state.tree;
  const keys = ["projects", "experiments"];
  for (let i = 0; i < ids.length; i++) {
    const node = level.find((n) => n.id === ids[i]);
    if (!node) return null;
    level = node[keys[i]] || [];
  }
  return true;
}
