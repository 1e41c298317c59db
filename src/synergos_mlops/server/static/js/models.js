// A registered model version's page: the version and the data that trained it.
import { API, getJSON, path, runHref } from "./api.js";
import { columnChips, datasetHref, kvTable, rowsText, shortDigest } from "./catalogue.js";
import { external, h, link } from "./dom.js";
import { fmtTime, plural } from "./format.js";
import { lineageGraph, mlflowModelHref, mlflowVersionHref, reach } from "./lineage.js";
import { catalogueCrumbs } from "./tree.js";

// ---------- a registered model version ----------
// models/<name>/<version>: the version, and which data trained it: the part of its run's
// lineage upstream of it (GET /lineage/models/{name}/{version}).
export async function renderModelVersion(main, ids) {
  const [name, version] = ids;
  catalogueCrumbs([["Model versions"], [name], ["version " + version]]);
  let body;
  try {
    body = await getJSON(new URL("lineage/models/" + path(name, version), API));
  } catch (err) {
    main.replaceChildren(h("div", { class: "error", id: "model-version-error" },
      "could not load version " + version + " of model " + name + ": " + (err.message || err)),
      h("p", {}, link("catalogue", "← the data catalogue")));
    return;
  }
  const v = body.model_version;
  const r = body.run;
  const here = "model_version:" + v.name + "/" + v.version;
  const nodes = body.nodes || [];
  const edges = (body.edges || []).slice();
  if (!nodes.some((n) => n.id === here)) {
    // Not among the run's versions (an account that does not see its participant): hang it
    // on its model, or the run it names, whichever the graph has.
    nodes.push({ id: here, type: "model_version", label: v.name + " v" + v.version });
    const from = ["model:" + v.model_id, "participant_run:" + v.run_id].find((id) => nodes.some((n) => n.id === id));
    edges.push([from || "run:" + r.mlflow_run_id, here]);
  }
  // Only what led to this version: a participant's own model came from its data alone.
  const upstream = reach(edges, here, 1);
  const lineage = Object.assign({}, body, {
    nodes: nodes.filter((n) => upstream.has(n.id)),
    edges: edges.filter(([from, to]) => upstream.has(from) && upstream.has(to)),
  });
  const datasets = (body.datasets || []).filter((d) => upstream.has("dataset:" + r.collaboration + "/" + d.participant + "/" + d.digest));
  const participants = (body.participants || []).filter((p) => upstream.has("participant_run:" + p.mlflow_run_id));
  const owner = (body.participants || []).find((p) => p.mlflow_run_id === v.run_id);
  const model = (body.models || []).find((m) => m.model_id === v.model_id);
  // The run it came from (said twice: built twice, a node lives in one place).
  const source = (id) => {
    const runLink = link(runHref(r.collaboration, r.project, r.experiment, r.run), r.run,
      { id, title: [r.collaboration, r.project, r.experiment, r.run].join(" / ") });
    return owner ? ["participant ", h("b", {}, owner.id), "'s run in ", runLink] : ["run ", runLink];
  };
  main.replaceChildren(
    h("div", { class: "sub", style: "margin-bottom:4px" }, "Model version"),
    h("h1", {}, v.name + " v" + v.version),
    h("div", { class: "sub" },
      v.status ? h("span", { class: "badge", id: "model-version-status" }, v.status) : null,
      h("span", {}, "from ", source("model-version-run")),
      v.created ? h("span", {}, "registered " + fmtTime(v.created)) : null,
      h("div", { class: "actions" },
        external(mlflowVersionHref(v.name, v.version), "Open in MLflow ↗", { class: "btn", id: "open-mlflow-version" }))),
    h("div", { class: "grid2" },
      h("div", { class: "card", id: "model-version-facts" }, h("h2", {}, "Version"), kvTable([
        ["Name", v.name], ["Version", String(v.version)], ["Status", v.status],
        ["Registered", v.created ? fmtTime(v.created) : null],
        ["Source run", h("span", {}, source(null))],
        ["Collaboration / project / experiment", [r.collaboration, r.project, r.experiment].join(" / ")],
        ["Logged model", model ? h("span", {}, r.mlflow_experiment_id ? external(mlflowModelHref(r.mlflow_experiment_id, model.model_id), model.name + " ↗") : model.name,
          " ", h("code", {}, model.model_id)) : v.model_id ? h("code", {}, v.model_id) : null],
        ["Source", v.source ? h("code", {}, v.source) : null], ["URI", h("code", {}, v.uri)]], "model-version-table")),
      h("div", { class: "card", id: "model-datasets" }, h("h2", {}, "Which data trained it"),
        datasets.length ? h("div", { class: "scroll" }, h("table", { id: "model-datasets-table" },
          h("thead", {}, h("tr", {}, ["Participant", "Split", "Dataset", "Kind", "Rows", "Columns and types"]
            .map((t, i) => h("th", { class: i === 4 ? "num" : "" }, t)))),
          h("tbody", {}, datasets.map((d) => h("tr", { dataset: { participant: d.participant, split: d.split || "", digest: d.digest } },
            h("td", {}, d.participant), h("td", {}, d.split || "—"),
            h("td", {}, link(datasetHref(r.collaboration, d.participant, d.digest), h("code", {}, shortDigest(d.digest)), { class: "dataset-link", title: d.name + " · " + d.digest })),
            h("td", {}, d.kind || "—"), h("td", { class: "num" }, rowsText(d)),
            h("td", { class: "cols" }, columnChips(d.columns)))))))
          : h("p", { class: "muted", id: "model-no-datasets" }, "No dataset was catalogued for the participants behind it."),
        h("p", { class: "muted small" }, plural(participants.length, "participant run") + ": ",
          participants.map((p, i) => [i ? ", " : "", p.id])))),
    h("div", { class: "card", id: "model-lineage" },
      h("div", { class: "card-head lineage-head" }, h("h2", {}, "Lineage"),
        h("span", { class: "muted small" }, "what led to this version; hover or focus a node to trace its path")),
      lineageGraph(lineage, { current: here, linkRun: true })));
}
