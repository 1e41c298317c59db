// The data catalogue: every dataset by collaboration → participant → split, and shared cells.
import { API, getJSON, path, ROOT, runHref } from "./api.js";
import { code, h, link, stat } from "./dom.js";
import { fmtNum, fmtTime } from "./format.js";
import { catalogueCrumbs } from "./tree.js";

// ---------- data catalogue ----------
// catalogue: every dataset by collaboration → participant → split; catalogue/<c>/<p>/<digest>:
// one dataset's columns, profile and runs. The run page's "Data and lineage" card is below.
export const datasetHref = (c, p, digest) => "catalogue/" + path(c, p, digest);
export const shortDigest = (digest) => String(digest || "").slice(0, 12);
export const mlflowHash = (hash) => new URL("#/" + hash, ROOT).href;
export function runRef(r) {
  if (!r) return h("span", { class: "muted" }, "—");
  return h("span", { class: "run-ref" },
    link(runHref(r.collaboration, r.project, r.experiment, r.run), r.run,
      { title: [r.collaboration, r.project, r.experiment, r.run].join(" / ") }),
    r.start_time ? h("span", { class: "muted small" }, " " + fmtTime(r.start_time)) : null);
}
export function rowsText(d) {
  if (d.rows !== null && d.rows !== undefined) return fmtNum(d.rows);
  if (d.src_count !== null && d.src_count !== undefined) return h("span", { title: "source count (the summary gives no row count)" }, fmtNum(d.src_count) + " src");
  return "—";
}
// Columns and their types as small chips that wrap; long schemas fold into a <details>.
export function columnChips(columns) {
  if (!columns || !columns.length) return h("span", { class: "muted" }, "—");
  const chips = h("span", { class: "col-chips" }, columns.map((c) =>
    h("span", { class: "col-chip", dataset: { column: c.name } }, c.name, h("i", {}, c.type))));
  if (columns.length <= 8) return chips;
  return h("details", { class: "col-fold" }, h("summary", {}, columns.length + " columns"), chips);
}
export function kvTable(rows, id) {
  return h("div", { class: "scroll" }, h("table", { class: "kv", id },
    h("tbody", {}, rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v instanceof Node ? v : typeof v === "object" ? JSON.stringify(v) : fmtNum(v)))))));
}

export async function renderCatalogue(main) {
  catalogueCrumbs([["Data catalogue"]]);
  let body;
  try {
    body = await getJSON(new URL("catalogue", API));
  } catch (err) {
    main.replaceChildren(h("div", { class: "error", id: "catalogue-error" }, "could not load the catalogue: " + (err.message || err)));
    return;
  }
  const collabs = body.collaborations || [];
  const datasets = collabs.flatMap((c) => c.participants.flatMap((p) => p.splits.flatMap((s) => s.datasets)));
  const head = [
    h("div", { class: "sub", style: "margin-bottom:4px" }, "Data catalogue"),
    h("h1", {}, "Datasets"),
    h("div", { class: "sub" }, "Each participant's data summary by collaboration → participant → split; the data itself never leaves the participant."),
  ];
  if (!datasets.length) {
    main.replaceChildren(...head, h("div", { class: "card", id: "catalogue-empty" }, h("h2", {}, "No datasets catalogued yet"),
      h("p", {}, "A participant's data summary is catalogued when its run logs it, ",
        code("run.log_dataset(\"<participant>\", \"train\", summary)"), ", or when ", code("synmlops ingest"),
        " finds a worker's ", code("catalogue.json"), ".")));
    return;
  }
  const participants = new Set(collabs.flatMap((c) => c.participants.map((p) => c.id + "\u0000" + p.id))).size;
  main.replaceChildren(...head,
    h("div", { class: "stats" },
      stat(collabs.length, "collaboration"),
      stat(participants, "participant"),
      stat(datasets.length, "dataset")),
    ...collabs.map((c) => h("div", { class: "card catalogue-collab", dataset: { collaboration: c.id } },
      h("h2", {}, h("span", { class: "muted small" }, "collaboration "), c.id),
      c.participants.map((p) => h("div", { class: "catalogue-participant", dataset: { participant: p.id } },
        h("h3", {}, p.id),
        h("div", { class: "scroll" }, h("table", { class: "catalogue-table" },
          h("thead", {}, h("tr", {}, ["Split", "Dataset", "Kind", "Rows", "Columns and types", "Runs", "First run", "Last run"]
            .map((t, i) => h("th", { class: i === 3 || i === 5 ? "num" : "" }, t)))),
          h("tbody", {}, p.splits.flatMap((s) => s.datasets.map((d, i) =>
            h("tr", { class: "dataset-row", dataset: { digest: d.digest, split: s.split || "" } },
              h("td", {}, i ? "" : h("b", {}, s.split || "—")),
              h("td", {}, link(datasetHref(c.id, p.id, d.digest), h("code", {}, shortDigest(d.digest)),
                { class: "dataset-link", title: d.name + " · " + d.digest })),
              h("td", {}, d.kind || "—"),
              h("td", { class: "num" }, rowsText(d)),
              h("td", { class: "cols" }, columnChips(d.columns)),
              h("td", { class: "num" }, d.runs),
              h("td", { class: "first-run" }, runRef(d.first_run)),
              h("td", { class: "last-run" }, runRef(d.last_run)))))))))))));
}
