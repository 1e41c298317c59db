// One dataset's page: facts, columns, profile, the runs that used it and the models it reached.
import { API, getJSON, path, runHref } from "./api.js";
import { kvTable, runRef, shortDigest } from "./catalogue.js";
import { external, h, link } from "./dom.js";
import { fmtNum, fmtTime } from "./format.js";
import { mlflowVersionHref, modelHref } from "./lineage.js";
import { catalogueCrumbs } from "./tree.js";

// One dataset: facts, columns, the profile as the participant summarised it, and its runs.
export async function renderDataset(main, ids) {
  const [c, participant, digest] = ids;
  catalogueCrumbs([["Data catalogue", "catalogue"], [c], [participant], [shortDigest(digest)]]);
  let d;
  try {
    d = await getJSON(new URL("catalogue/" + path(c, participant, digest), API));
  } catch (err) {
    main.replaceChildren(h("div", { class: "error", id: "dataset-error" }, "could not load the dataset: " + (err.message || err)),
      h("p", {}, link("catalogue", "← the data catalogue")));
    return;
  }
  const profile = d.profile || {};
  const kind = profile.kind;
  const meta = profile.metadata && typeof profile.metadata === "object" ? profile.metadata : {};
  // The worker nests a tabular summary's columns under "features" and leaves image and text
  // summaries flat; a kind's fields nested under the kind's name (older summaries) are read too.
  const nests = kind === "tabular" ? ["features", "tabular"] : kind ? [kind] : [];
  const nest = nests.find((k) => meta[k] && typeof meta[k] === "object" && Object.keys(meta[k]).length);
  const fields = nest ? meta[nest] : meta;
  const source = d.source && typeof d.source === "object" ? d.source : {};
  main.replaceChildren(
    h("div", { class: "sub", style: "margin-bottom:4px" }, "Dataset"),
    h("h1", {}, d.name || participant),
    h("div", { class: "sub" },
      h("span", {}, "collaboration " + c), h("span", {}, "participant " + participant),
      (d.splits || []).map((s) => h("span", { class: "badge" }, s)),
      kind ? h("span", {}, kind) : null,
      profile.rows !== null && profile.rows !== undefined ? h("span", {}, fmtNum(profile.rows) + " rows") : null),
    h("div", { class: "grid2" },
      h("div", { class: "card", id: "dataset-facts" }, h("h2", {}, "Dataset"), kvTable([
        ["Digest", h("code", {}, d.digest)], ["Kind", kind], ["Rows", profile.rows], ["Source count", profile.src_count],
        ["Splits", (d.splits || []).join(", ")], ["Project", source.project], ["Source type", d.source_type],
        ["Schema digest", profile.schema_digest ? h("code", {}, profile.schema_digest) : null]], "dataset-facts-table")),
      schemaCard(d.schema)),
    ...profileCards(kind, fields),
    h("div", { class: "card", id: "dataset-runs" }, h("h2", {}, "Runs that used it"),
      (d.runs || []).length ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Collaboration / project / experiment"), h("th", {}, "Started"))),
        h("tbody", {}, d.runs.map((r) => h("tr", {},
          h("td", {}, link(runHref(r.collaboration, r.project, r.experiment, r.run), r.run)),
          h("td", { class: "muted" }, [r.collaboration, r.project, r.experiment].join(" / ")),
          h("td", {}, fmtTime(r.start_time)))))))
        : h("p", { class: "muted" }, "No run used it.")),
    datasetModelsCard(c, participant, digest));
}

function schemaCard(schema) {
  const synergos = (schema && schema.synergos) || {};
  const types = synergos.datatypes || {};
  const mlflow = {};
  for (const c of (schema && schema.mlflow_colspec) || []) mlflow[c.name] = c.type;
  const headers = (synergos.headers || []).filter((n) => n in types);
  const names = [...headers, ...Object.keys(types).filter((n) => !headers.includes(n)).sort(),
    ...Object.keys(mlflow).filter((n) => !(n in types))];
  return h("div", { class: "card", id: "dataset-columns" }, h("h2", {}, "Columns"),
    names.length ? h("div", { class: "scroll" }, h("table", { id: "columns-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Column"), h("th", {}, "Type"), h("th", {}, "MLflow type"))),
      h("tbody", {}, names.map((n) => h("tr", { dataset: { column: n } }, h("td", {}, n),
        h("td", {}, types[n] || "—"), h("td", { class: "muted" }, mlflow[n] || "—"))))))
      : h("p", { class: "muted" }, "No columns: the summary is not tabular or gave no schema."));
}

const NUMERIC_STATS = ["datatype", "count", "mean", "std", "min", "25%", "50%", "75%", "max"];
const isScalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);
function profileCards(kind, fields) {
  const cards = [];
  const num = fields.num_variables && typeof fields.num_variables === "object" ? fields.num_variables : null;
  const cat = fields.cat_variables && typeof fields.cat_variables === "object" ? fields.cat_variables : null;
  if (num && Object.keys(num).length) {
    const names = Object.keys(num);
    const extra = [...new Set(names.flatMap((n) => Object.keys(num[n] || {})))]
      .filter((k) => !NUMERIC_STATS.includes(k) && names.some((n) => isScalar(num[n][k]))).sort();
    const stats = [...NUMERIC_STATS, ...extra];
    cards.push(h("div", { class: "card", id: "numeric-profile" }, h("h2", {}, "Numeric columns"),
      h("div", { class: "scroll" }, h("table", { id: "numeric-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Column"), stats.map((s) => h("th", { class: s === "datatype" ? "" : "num" }, s === "datatype" ? "type" : s)))),
        h("tbody", {}, names.map((n) => h("tr", { dataset: { column: n } }, h("td", {}, n),
          stats.map((s) => h("td", { class: s === "datatype" ? "" : "num" }, isScalar((num[n] || {})[s]) ? fmtNum(num[n][s]) : "—")))))))));
  }
  if (cat && Object.keys(cat).length) {
    cards.push(h("div", { class: "card", id: "category-profile" }, h("h2", {}, "Category columns"),
      h("div", { class: "cat-grid" }, Object.entries(cat).map(([n, v]) => categoryBox(n, v || {})))));
  }
  const rest = Object.entries(fields).filter(([k]) => !["num_variables", "cat_variables", "_type"].includes(k));
  const scalars = rest.filter(([, v]) => isScalar(v) || Array.isArray(v));
  const nested = rest.filter(([, v]) => v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length);
  if (scalars.length || (!cards.length && nested.length)) {
    const title = kind === "image" ? "Images" : kind === "text" ? "Text" : "Summary";
    const rows = [];
    if (kind === "image" && fields.pixel_width !== undefined && fields.pixel_height !== undefined) {
      rows.push(["Image size", fields.pixel_width + " × " + fields.pixel_height + " px"]);
    }
    const sized = rows.length > 0;  // pixel_width and pixel_height said once, as the image size
    for (const [k, v] of scalars) if (!(sized && (k === "pixel_width" || k === "pixel_height"))) rows.push([k, Array.isArray(v) ? v.join(", ") : v]);
    for (const [k, v] of cards.length ? [] : nested) rows.push([k, v]);
    cards.push(h("div", { class: "card", id: "kind-profile", dataset: { kind: kind || "" } }, h("h2", {}, title), kvTable(rows, "kind-table")));
  }
  if (!cards.length) {
    cards.push(h("div", { class: "card", id: "profile-empty" }, h("h2", {}, "Profile"),
      h("p", { class: "muted" }, "The participant's summary holds no statistics for this dataset.")));
  }
  return cards;
}
// A category column: its counts, and its labels with frequencies where the summary gives them
// (a {label: count} object such as value_counts, else the top label's freq).
function categoryBox(name, v) {
  const count = typeof v.count === "number" ? v.count : null;
  const mapping = Object.values(v).find((x) => x && typeof x === "object" && !Array.isArray(x)
    && Object.keys(x).length && Object.values(x).every((y) => typeof y === "number"));
  let bars;
  if (mapping) {
    const total = count || Object.values(mapping).reduce((a, b) => a + b, 0) || 1;
    bars = Object.entries(mapping).sort((a, b) => b[1] - a[1]).slice(0, 20);
    bars = bars.map(([label, n]) => [label, n, n / total]);
  } else if (v.top !== undefined && typeof v.freq === "number") {
    bars = [[v.top, v.freq, count ? v.freq / count : null]];
  } else bars = [];
  const labels = Array.isArray(v.labels) ? v.labels : [];
  return h("div", { class: "cat-box", dataset: { column: name } },
    h("h3", {}, name, " ", h("span", { class: "muted small" }, v.datatype || "")),
    h("div", { class: "muted small" }, [count !== null ? count + " values" : null, v.unique !== undefined ? v.unique + " distinct" : null].filter(Boolean).join(" · ")),
    bars.length ? h("div", { class: "bars" }, bars.map(([label, n, share]) => h("div", { class: "bar-row", dataset: { label: String(label) } },
      h("span", { class: "bar-name" }, String(label), mapping ? "" : h("span", { class: "muted" }, " (top)")),
      h("span", { class: "bar" }, h("span", { style: "width:" + Math.round((share || 0) * 100) + "%" })),
      h("span", { class: "num" }, fmtNum(n) + (share !== null ? " · " + Math.round(share * 100) + "%" : ""))))) : null,
    labels.length ? h("div", { class: "col-chips labels" }, labels.slice(0, 40).map((l) => h("span", { class: "col-chip" }, String(l))),
      labels.length > 40 ? h("span", { class: "muted small" }, "+" + (labels.length - 40) + " more") : null) : null);
}

// A dataset page's "Models it reached": the runs that used it, and the logged models and
// registered versions that came out of them (GET /lineage/datasets/{c}/{participant}/{digest}).
function datasetModelsCard(c, participant, digest) {
  const box = h("div", { class: "card", id: "dataset-models", dataset: { state: "loading" } }, h("h2", {}, "Models it reached"),
    h("p", { class: "muted" }, "Loading…"));
  getJSON(new URL("lineage/datasets/" + path(c, participant, digest), API)).then((body) => {
    const runs = body.runs || [];
    box.dataset.state = (body.models || []).length || (body.model_versions || []).length ? "loaded" : "empty";
    box.replaceChildren(h("h2", {}, "Models it reached"),
      box.dataset.state === "empty" ? h("p", { class: "muted", id: "dataset-no-models" },
        "No model was logged or registered from the runs that used it.")
        : h("div", { class: "scroll" }, h("table", { id: "dataset-models-table" },
          h("thead", {}, h("tr", {}, ["Run", "Splits", "Logged models", "Model versions"].map((t) => h("th", {}, t)))),
          h("tbody", {}, runs.map((run) => h("tr", { dataset: { run: run.run } },
            h("td", {}, runRef(run)), h("td", {}, (run.splits || []).join(", ") || "—"),
            h("td", {}, run.models.length ? run.models.map((m) => h("div", {}, m.name, " ",
              h("span", { class: "muted small" }, m.participant ? participant + "'s" : "global"))) : h("span", { class: "muted" }, "—")),
            h("td", {}, run.model_versions.length ? run.model_versions.map((v) => h("div", { class: "version-ref" },
              link(modelHref(v.name, v.version), v.name + " v" + v.version, { class: "model-version-page" }), " ",
              external(mlflowVersionHref(v.name, v.version), "MLflow ↗", { class: "small model-version-mlflow" })))
              : h("span", { class: "muted" }, "—"))))))));
  }).catch((err) => {
    box.dataset.state = "error";
    box.replaceChildren(h("h2", {}, "Models it reached"),
      h("p", { class: "error", id: "dataset-models-error" }, "could not load the models it reached: " + (err.message || err)));
  });
  return box;
}
