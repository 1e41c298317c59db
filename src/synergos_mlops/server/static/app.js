/* Synergos Command Station: a federation-aware view of runs kept in MLflow.
 * Plain JS, no build step. Every view has its own URL under /synergos/ built from the ids:
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
(function () {
  "use strict";

  const BASE = new URL(document.baseURI);
  const API = new URL("../api/synergos/v1/", BASE);
  const ROOT = new URL("../", BASE);
  const enc = encodeURIComponent;
  const state = {
    tree: null, run: null, axis: "round", hidden: new Set(), charts: {}, series: {}, observer: null, chartView: 0,
    timings: { parse: 0, draw: 0 },  // ms spent parsing JSON and drawing charts, for benchmarks
  };
  window.__synergos = state;

  // ---------- small helpers ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const link = (href, text, attrs) => h("a", Object.assign({ href, "data-nav": true }, attrs || {}), text);
  const path = (...ids) => ids.map(enc).join("/");
  const runHref = (c, p, e, r) => "runs/" + path(c, p, e, r);
  const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  function fmtNum(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toFixed(4);
  }
  function fmtSize(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function duration(a, b) {
    if (!a || !b) return null;
    const s = Math.round((new Date(b) - new Date(a)) / 1000);
    return s < 60 ? s + " s" : s < 3600 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
  }
  async function getJSON(url) {
    const res = await fetch(url, { headers: { Accept: "application/json" } });
    const text = await res.text();
    const started = performance.now();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
    state.timings.parse += performance.now() - started;
    if (!res.ok) throw new Error((body && body.error && body.error.message) || res.status + " " + res.statusText);
    return body;
  }
  function color(i) {
    return "hsl(" + Math.round((i * 137.508 + 200) % 360) + ", 62%, " + (i % 2 ? 52 : 42) + "%)";
  }
  const GLOBAL = "global";
  // Lower is better for these statistics; higher for the rest.
  const LOWER = /(loss|mse|mae|fprs?|fnrs?|fdrs?|fps|fns|error)$/i;

  // ---------- sidebar ----------
  // Collapsed or open by the toggle; the choice is remembered for wide screens. Narrow screens
  // (a phone, a small iframe) start collapsed and open the sidebar over the page.
  const NARROW = window.matchMedia("(max-width: 899px)");
  const SIDEBAR_KEY = "synergos.sidebar";
  function remembered() {
    try { return localStorage.getItem(SIDEBAR_KEY); } catch (err) { return null; }
  }
  function setSidebar(open, remember) {
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

  // ---------- routing ----------
  function route() {
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
  function go(href) {
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

  // ---------- tree ----------
  async function loadTree() {
    try {
      state.tree = (await getJSON(new URL("collaborations", API))).collaborations;
    } catch (err) {
      document.getElementById("tree").replaceChildren(
        h("p", { class: "error pad", id: "tree-error" }, "could not load the runs: " + (err.message || err)));
      throw err;
    }
    drawTree();
  }
  function drawTree() {
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
              [h("span", { class: "dot " + (r.status || "") }), h("span", {}, r.id),
               h("span", { class: "count", title: "participants" }, r.participant_count + " ◆")],
              { class: "run" + (selected ? " selected" : ""), role: "treeitem", title: r.status || "" }));
          }
          pNode.append(eNode);
        }
        cNode.append(pNode);
      }
      box.append(cNode);
    }
  }
  document.getElementById("tree-filter").addEventListener("input", () => state.tree && drawTree());

  function crumbs(ids, runView) {
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

  // ---------- overview and folder views ----------
  // Runs ticked in a runs table, compared on their own page (compare?run=c/p/e/r&run=...).
  const MAX_COMPARED = 10;
  const compareHref = (refs) => "compare?" + refs.map((r) => "run=" + r.map(enc).join("/")).join("&");
  function compareButton(table) {
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
  function renderFolder(main, ids) {
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
        h("div", { class: "stat" }, h("b", {}, collabs), "collaborations"),
        h("div", { class: "stat" }, h("b", {}, rows.length), "runs"),
        h("div", { class: "stat" }, h("b", {}, rows.filter((r) => r[3].status === "RUNNING").length), "running"),
        h("div", { class: "stat" }, h("b", {}, participants), "participant runs")),
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

  // ---------- run view ----------
  async function renderRun(main, ids, runJSON) {
    crumbs(ids, true);
    const base = new URL("runs/" + path(...ids), API);
    const run = await runJSON;
    state.run = run;
    state.base = base;
    state.series = {};
    const participants = run.participants.map((p) => p.id);
    const mlflowUrl = new URL(run.mlflow.url.replace(/^\//, ""), ROOT).href;
    main.replaceChildren(...[
      h("div", { class: "sub", style: "margin-bottom:4px" }, "Federated run"),
      h("h1", {}, run.run),
      h("div", { class: "sub" },
        h("span", { class: "badge " + (run.status || "") }, run.status || "—"),
        h("span", {}, participants.length + " participants"),
        h("span", {}, "started " + fmtTime(run.start_time)),
        run.end_time ? h("span", {}, "took " + duration(run.start_time, run.end_time)) : null,
        h("div", { class: "actions" },
          link("c/" + path(ids[0], ids[1], ids[2]), "Studies & compare", { class: "btn", id: "experiment-studies" }),
          h("a", { class: "btn", id: "open-mlflow", href: mlflowUrl, target: "_blank", rel: "noopener" }, "Open in MLflow ↗"),
          h("a", { class: "btn primary", id: "download-all", href: base.href + "/bundle.zip", download: "" }, "⤓ Download all"))),
      tabBar(),
      h("div", { class: "tab-panel", id: "panel-overview", role: "tabpanel", "aria-labelledby": "tab-overview" }, ...[
        h("div", { class: "grid2" },
          h("div", { class: "card" }, h("h2", {}, "Hyperparameters"), paramsTable(run.hyperparameters)),
          h("div", { class: "card" }, h("h2", {}, "Participants — latest metrics"), latestTable(run))),
        metricsCard(run),
        dataLineageCard(run, ids),
        classCard(run),
        unattributedCard(run),
        artifactsCard(run),
      ].filter(Boolean)),
      h("div", { class: "tab-panel", id: "panel-hardware", role: "tabpanel", "aria-labelledby": "tab-hardware", hidden: true }),
      h("div", { class: "tab-panel", id: "panel-logs", role: "tabpanel", "aria-labelledby": "tab-logs", hidden: true }),
    ].filter(Boolean));
    drawCharts();
    showTab(tabOfUrl());
  }

  function paramsTable(params) {
    const keys = Object.keys(params);
    if (!keys.length) return h("p", { class: "muted" }, "No hyperparameters logged.");
    return h("div", { class: "scroll" }, h("table", { id: "hyperparameters" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Value"))),
      h("tbody", {}, keys.map((k) => h("tr", {}, h("td", {}, k), h("td", {}, params[k]))))));
  }

  const isClassKey = (k) => /\/class_\d+$/.test(k);
  const isEpochKey = (k) => ("/" + k).includes("/epoch/");
  // Hardware statistics (system/...) are drawn by the Hardware tab, by seconds, not here.
  const isSystemKey = (k) => k.startsWith("system/");

  function latestTable(run) {
    const keys = run.metric_keys.filter((k) => !isClassKey(k) && !isEpochKey(k) && !isSystemKey(k));
    if (!keys.length) return h("p", { class: "muted" }, "No metrics logged.");
    const parts = run.participants.map((p) => p.id);
    const marks = {};
    for (const k of keys) {
      const vals = parts.map((p) => (run.latest_metrics.participants[p][k] || {}).value)
        .filter((v) => typeof v === "number");
      if (vals.length < 2) continue;
      const lower = LOWER.test(k.split("/").pop());
      const hi = Math.max(...vals), lo = Math.min(...vals);
      if (hi === lo) continue;
      marks[k] = { best: lower ? lo : hi, worst: lower ? hi : lo };
    }
    const cell = (p, k) => {
      const v = ((p === GLOBAL ? run.latest_metrics.global : run.latest_metrics.participants[p])[k] || {}).value;
      const m = p !== GLOBAL && marks[k];
      const cls = "num" + (m && v === m.best ? " best" : m && v === m.worst ? " worst" : "");
      return h("td", { class: cls, title: m && v === m.best ? "best" : m && v === m.worst ? "worst" : null }, fmtNum(v));
    };
    return h("div", { class: "scroll" }, h("table", { id: "latest-metrics" },
      h("thead", {}, h("tr", {}, h("th", {}, "Participant"), keys.map((k) => h("th", { class: "num" }, k)))),
      h("tbody", {},
        h("tr", { class: "global" }, h("td", {}, "Global"), keys.map((k) => cell(GLOBAL, k))),
        parts.map((p) => h("tr", { dataset: { participant: p } }, h("td", {}, p), keys.map((k) => cell(p, k)))))));
  }

  function classCard(run) {
    const stats = [...new Set(run.metric_keys.filter(isClassKey).map((k) => k.replace(/\/class_\d+$/, "")))].sort();
    if (!stats.length) {
      return h("div", { class: "card", id: "per-class" }, h("h2", {}, "Per-class statistics"),
        h("p", { class: "muted empty" }, "No per-class statistics logged (keys like evaluate/accuracy/class_0)."));
    }
    const box = h("div", {});
    const select = h("select", { id: "class-stat", "aria-label": "Statistic", onchange: () => draw() },
      stats.map((s) => h("option", { value: s }, s)));
    // Open on accuracy when there is one: the statistic most readers look for first.
    select.value = stats.find((s) => /\/accuracy$/.test(s)) || stats[0];
    function draw() {
      const stat = select.value;
      const classes = run.metric_keys.filter((k) => k.startsWith(stat + "/class_"))
        .sort((a, b) => +a.split("_").pop() - +b.split("_").pop());
      const rows = [[GLOBAL, run.latest_metrics.global], ...run.participants.map((p) => [p.id, run.latest_metrics.participants[p.id]])];
      const mean = (m) => {
        const v = classes.map((k) => (m[k] || {}).value).filter((x) => typeof x === "number");
        return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
      };
      box.replaceChildren(h("div", { class: "scroll" }, h("table", { id: "class-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Participant"),
          classes.map((k) => h("th", { class: "num" }, "class " + k.split("_").pop())), h("th", { class: "num" }, "mean"))),
        h("tbody", {}, rows.map(([id, m]) => h("tr", { class: id === GLOBAL ? "global" : "" },
          h("td", {}, id === GLOBAL ? "Global" : id),
          classes.map((k) => h("td", { class: "num" }, fmtNum((m[k] || {}).value))),
          h("td", { class: "num" }, fmtNum(mean(m)))))))));
    }
    draw();
    return h("div", { class: "card", id: "per-class" },
      h("div", { class: "card-head" }, h("h2", {}, "Per-class statistics (latest round)"), select), box);
  }

  // Per-class statistics an original Synergos TTP logged with the class index as the step and
  // every participant's values on it: shown as logged, one row per point, never charted.
  function unattributedCard(run) {
    const found = run.unattributed;
    if (!found || !found.statistics.length) return null;
    const rows = found.statistics.flatMap((s) => s.points.map((p, i) =>
      h("tr", {}, h("td", {}, i ? "" : s.key), h("td", { class: "num" }, String(p.step)),
        h("td", { class: "num" }, fmtNum(p.value)), h("td", {}, fmtTime(new Date(p.timestamp).toISOString())))));
    return h("div", { class: "card", id: "unattributed" },
      h("h2", {}, "Statistics not attributable to a participant"),
      h("p", { class: "muted" }, found.note),
      h("div", { class: "scroll" }, h("table", { id: "unattributed-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Key as logged"), h("th", { class: "num" }, "Step as logged"),
          h("th", { class: "num" }, "Value"), h("th", {}, "Logged at"))),
        h("tbody", {}, rows))));
  }

  function artifactsCard(run) {
    const files = (list) => list.length
      ? h("ul", { class: "files" }, list.map((f) => h("li", {},
          h("a", { href: f.url, download: "" }, f.path), h("span", { class: "size" }, fmtSize(f.size)))))
      : h("p", { class: "muted" }, "No artifacts.");
    const groups = [h("details", { class: "artifact-group", open: true },
      h("summary", {}, "Global (federation)"), files(run.artifacts.global))];
    const many = run.participants.length > 6;
    for (const p of run.participants) {
      groups.push(h("details", { class: "artifact-group", open: !many, dataset: { participant: p.id } },
        h("summary", {}, p.id, h("a", { class: "btn", href: p.bundle, download: "" }, "ZIP")),
        files(run.artifacts.participants[p.id] || [])));
    }
    return h("div", { class: "card", id: "artifacts" },
      h("div", { class: "card-head" }, h("h2", {}, "Artifacts"),
        h("a", { class: "btn", href: state.base.href + "/bundle.zip", download: "" }, "Download all (ZIP)")),
      groups);
  }

  // ---------- charts ----------
  function metricsCard(run) {
    const hasEpoch = run.metric_keys.some((k) => isEpochKey(k) && !isSystemKey(k));
    const seg = h("div", { class: "seg", role: "group", "aria-label": "Axis" },
      ["round", "epoch"].map((axis) => h("button", {
        class: state.axis === axis ? "on" : "", "data-axis": axis, disabled: axis === "epoch" && !hasEpoch,
        onclick: () => { state.axis = axis; seg.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.axis === axis)); drawCharts(); },
      }, axis === "round" ? "Rounds" : "Epochs")));
    const names = [GLOBAL, ...run.participants.map((p) => p.id)];
    const chips = h("div", { class: "chips", id: "series-toggles" }, names.map((name, i) =>
      h("button", { class: "chip" + (state.hidden.has(name) ? " off" : ""), dataset: { series: name },
        onclick: (ev) => toggle(name, ev.currentTarget) },
        h("span", { class: "sw", style: "background:" + (i ? color(i - 1) : "#111") }), name === GLOBAL ? "Global" : name)));
    const all = (show) => () => {
      for (const n of names) { if (show) state.hidden.delete(n); else if (n !== GLOBAL) state.hidden.add(n); }
      chips.querySelectorAll(".chip").forEach((c) => c.classList.toggle("off", state.hidden.has(c.dataset.series)));
      applyVisibility();
    };
    return h("div", { class: "card", id: "metrics" },
      h("div", { class: "card-head" }, h("h2", {}, "Metrics"), seg,
        h("button", { class: "btn", onclick: all(true) }, "Show all"),
        h("button", { class: "btn", onclick: all(false) }, "Global only")),
      chips, h("div", { class: "charts", id: "charts" }));
  }
  function toggle(name, chip) {
    if (state.hidden.has(name)) state.hidden.delete(name); else state.hidden.add(name);
    chip.classList.toggle("off", state.hidden.has(name));
    applyVisibility();
  }
  function applyVisibility() {
    for (const chart of Object.values(state.charts)) {
      chart.u.batch(() => chart.names.forEach((n, i) => {
        const show = !state.hidden.has(n);
        if (chart.u.series[i + 1].show !== show) chart.u.setSeries(i + 1, { show });
      }));
      emptyNotice(chart.el, chart.lines, chart.names);
    }
  }

  // Every chart says what it is doing: "loading…", drawn, empty or the request's error.
  // document.body.dataset.charts counts the charts of the view, .chartsDrawn those drawn,
  // .chartsSettled those drawn, empty or failed; "synergos:charts-drawn" fires once all settled.
  function setChartState(el, kind, text) {
    if (el.dataset.state === kind && kind !== "empty") return;
    const settled = (k) => k === "drawn" || k === "empty" || k === "error";
    const before = el.dataset.state;
    el.dataset.state = kind;
    const note = el.querySelector(".chart-state");
    note.className = "chart-state " + kind;
    note.textContent = text || "";
    note.hidden = !text;
    if (el.dataset.chartView !== String(state.chartView)) return;
    const body = document.body.dataset;
    if (kind === "drawn" && before !== "drawn") body.chartsDrawn = String(+body.chartsDrawn + 1);
    if (settled(kind) && !settled(before)) {
      body.chartsSettled = String(+body.chartsSettled + 1);
      if (body.chartsSettled === body.charts) {
        body.chartsDrawnMs = String(Math.round(performance.now()));  // since navigation began
        document.dispatchEvent(new CustomEvent("synergos:charts-drawn", { detail: { charts: +body.charts } }));
      }
    }
  }
  function emptyNotice(el, lines, names) {
    const count = (n) => (lines[n] ? lines[n].steps.length : 0);
    const any = names.some((n) => count(n) > 0);
    const shown = names.some((n) => !state.hidden.has(n) && count(n) > 0);
    const text = !any ? "no points logged for this key"
      : !shown ? "no points logged for this key by the lines shown" : "";
    const note = el.querySelector(".chart-state");
    if (el.dataset.state === "drawn" || el.dataset.state === "empty") {
      note.className = "chart-state " + (text ? "empty" : "");
      note.textContent = text;
      note.hidden = !text;
    }
    return text;
  }

  // Series are fetched when their chart comes near the viewport; charts that come into view
  // together share one request. (Two requests side by side were measured slower: both often
  // land on the same server worker, and the second answer then arrives after the first.)
  let queue = new Map();
  function request(key, el) {
    queue.set(key, el);
    if (queue.size > 1) return;
    const view = state.chartView;
    setTimeout(() => {
      const batch = [...queue];
      queue = new Map();
      if (view === state.chartView) fetchSeries(batch, view);
    }, 0);
  }
  async function fetchSeries(batch, view) {
    const url = new URL(state.base.href + "/metrics");
    url.searchParams.set("keys", batch.map(([k]) => k).join(","));
    let series;
    try {
      series = (await getJSON(url)).series;
    } catch (err) {
      if (view !== state.chartView) return;
      for (const [k, chartEl] of batch) {
        setChartState(chartEl, "error", "could not load the points of " + k + ": " + (err.message || err));
      }
      return;
    }
    if (view !== state.chartView) return;
    Object.assign(state.series, series);
    for (const [k, chartEl] of batch) plot(chartEl, k);
  }

  function stopCharts() {
    for (const c of Object.values(state.charts)) { resizer.unobserve(c.u.root.parentNode); c.u.destroy(); }
    if (state.observer) state.observer.disconnect();
    state.charts = {};
    state.chartView += 1;
    queue = new Map();
    for (const k of ["charts", "chartsDrawn", "chartsSettled"]) delete document.body.dataset[k];
  }

  function drawCharts() {
    const run = state.run;
    const box = document.getElementById("charts");
    stopCharts();
    box.replaceChildren();
    const keys = run.metric_keys.filter((k) => !isClassKey(k) && !isSystemKey(k) && (state.axis === "epoch") === isEpochKey(k));
    Object.assign(document.body.dataset, { charts: String(keys.length), chartsDrawn: "0", chartsSettled: "0" });
    if (!keys.length) {
      box.append(h("p", { class: "muted empty" }, "No " + state.axis + "-level metrics logged."));
      document.dispatchEvent(new CustomEvent("synergos:charts-drawn", { detail: { charts: 0 } }));
      return;
    }
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        const key = entry.target.dataset.metric;
        if (state.series[key]) plot(entry.target, key); else request(key, entry.target);
      }
    }, { root: document.getElementById("main"), rootMargin: "400px" });
    state.observer = observer;
    for (const key of keys) {
      const el = h("div", { class: "chart", dataset: { metric: key, chartView: String(state.chartView), state: "loading" } },
        h("h3", {}, key), h("div", { class: "plot" }),
        h("p", { class: "chart-state loading", role: "status" }, "loading…"));
      box.append(el);
      observer.observe(el);
    }
  }

  // One ResizeObserver for every chart: a chart follows its box's width.
  const resizer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = entry.target.__chart;
      const w = Math.floor(entry.contentRect.width);
      if (chart && w > 0 && Math.abs(w - chart.u.width) > 1) chart.u.setSize({ width: w, height: CHART_HEIGHT });
    }
  });
  const CHART_HEIGHT = 240;

  function plot(el, key) {
    const started = performance.now();
    const run = state.run;
    const s = state.series[key];
    // The global line is drawn last, on top of the participants' lines.
    const names = [...run.participants.map((p) => p.id), GLOBAL];
    const byName = {};
    for (const n of names) byName[n] = (n === GLOBAL ? s && s.global : s && s.participants[n]) || null;
    const lines = names.map((n) => byName[n] || { steps: [], values: [] });
    const holder = el.querySelector(".plot");
    if (!lines.some((l) => l.steps.length)) {
      setChartState(el, "empty", "no points logged for this key");
      return;
    }
    const xs = [...new Set(lines.flatMap((l) => l.steps))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = [xs, ...lines.map((l) => {
      const ys = new Array(xs.length).fill(null);
      l.steps.forEach((st, i) => { ys[index.get(st)] = l.values[i]; });
      return ys;
    })];
    const tip = h("div", { class: "tip" });
    const axisName = s.axis === "epoch" ? "epoch" : "round";
    const opts = {
      width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { points: { size: 6 }, focus: { prox: 24 } },
      focus: { alpha: 0.35 },
      scales: { x: { time: false } },
      axes: [{ label: axisName, labelSize: 18, size: 34, stroke: "#6b7685", grid: { stroke: "#eef1f5" } },
             { size: 56, stroke: "#6b7685", grid: { stroke: "#eef1f5" } }],
      series: [{ label: axisName }, ...names.map((n, i) => ({
        label: n === GLOBAL ? "Global" : n, show: !state.hidden.has(n),
        stroke: n === GLOBAL ? "#111" : color(i), width: n === GLOBAL ? 2.6 : 1.4, spanGaps: true,
        points: { show: xs.length < 40 && names.length < 12 },
      }))],
      hooks: {
        setCursor: [(u) => showTip(u, tip, axisName)],
        draw: [() => {
          if (el.dataset.state === "drawn") return;
          const t = state.timings;
          t.drawStart = Math.min(t.drawStart || Infinity, started);
          t.drawEnd = Math.max(t.drawEnd || 0, performance.now());
          t.draw = t.drawEnd - t.drawStart;  // wall time: the first chart begun to the last drawn
          el.dataset.drawnMs = String(Math.round(performance.now()));  // since navigation began
          setChartState(el, "drawn", "");
          emptyNotice(el, byName, names);
        }],
      },
    };
    const u = new uPlot(opts, data, holder);
    u.over.append(tip);
    state.charts[key] = { u, names, el, lines: byName };
    el.dataset.lines = String(names.length);
    holder.__chart = state.charts[key];
    resizer.observe(holder);
  }

  function showTip(u, tip, axisName) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) { tip.style.display = "none"; return; }
    const rows = [];
    for (let i = 1; i < u.series.length; i++) {
      const v = u.data[i][idx];
      if (!u.series[i].show || v === null || v === undefined) continue;
      rows.push([u.series[i].label, v, u.series[i].stroke()]);
    }
    if (!rows.length) { tip.style.display = "none"; return; }
    rows.sort((a, b) => b[1] - a[1]);
    const shown = rows.slice(0, 12);
    const more = rows.length - shown.length;
    tip.replaceChildren(...[
      h("div", { class: "muted", style: "color:#c9d6f5" }, axisName + " " + u.data[0][idx]),
      ...shown.map(([label, v, c]) => h("div", { class: "row" },
        h("span", { class: "sw", style: "background:" + c }), label, h("b", {}, fmtNum(v)))),
      more > 0 ? h("div", { class: "muted", style: "color:#c9d6f5" }, "+ " + more + " more") : null,
    ].filter(Boolean));
    tip.style.display = "block";
    const left = u.cursor.left + 14, width = tip.offsetWidth;
    tip.style.left = (left + width > u.over.clientWidth ? u.cursor.left - width - 14 : left) + "px";
    tip.style.top = Math.max(0, Math.min(u.cursor.top - 10, u.over.clientHeight - tip.offsetHeight)) + "px";
  }

  // ---------- run tabs: Overview, Hardware, Logs ----------
  // The tab is part of the URL (#hardware, #logs; the Overview has none), so a link opens it.
  // Tabs switch without reloading; the Hardware and Logs tabs load when first shown.
  const TABS = [["overview", "Overview"], ["hardware", "Hardware"], ["logs", "Logs"]];
  const tabOfUrl = () => {
    const name = location.hash.replace(/^#/, "") || new URLSearchParams(location.search).get("tab") || "overview";
    return TABS.some(([t]) => t === name) ? name : "overview";
  };
  const tabs = { view: 0, loaded: new Set(), timers: [], hw: [], logs: null };
  function tabBar() {
    return h("div", { class: "tabs", role: "tablist", id: "run-tabs" }, TABS.map(([t, label]) =>
      h("button", { class: "tab", role: "tab", id: "tab-" + t, type: "button", dataset: { tab: t },
        "aria-controls": "panel-" + t, "aria-selected": "false",
        onclick: () => {
          if (tabOfUrl() === t) return;
          history.pushState(null, "", location.pathname + location.search + (t === "overview" ? "" : "#" + t));
          showTab(t);
        } }, label)));
  }
  function showTab(name) {
    for (const [t] of TABS) {
      const panel = document.getElementById("panel-" + t), button = document.getElementById("tab-" + t);
      if (!panel || !button) return;
      panel.hidden = t !== name;
      button.classList.toggle("on", t === name);
      button.setAttribute("aria-selected", String(t === name));
    }
    document.body.dataset.tab = name;
    if (tabs.loaded.has(name)) { if (name === "logs" && tabs.logs) tabs.logs.paint(); return; }
    tabs.loaded.add(name);
    if (name === "hardware") loadHardware(document.getElementById("panel-hardware"));
    if (name === "logs") loadLogs(document.getElementById("panel-logs"));
  }
  function stopTabs() {
    tabs.view += 1;
    tabs.loaded = new Set();
    for (const t of tabs.timers) clearTimeout(t);
    tabs.timers = [];
    for (const c of tabs.hw) { resizer.unobserve(c.u.root.parentNode); c.u.destroy(); }
    tabs.hw = [];
    tabs.logs = null;
    delete document.body.dataset.tab;
  }
  const code = (text) => h("code", {}, text);

  // ----- Hardware: a chart per system/... statistic, a line per participant, by seconds since
  // the run's start, rounds shaded; and a participants × rounds heatmap of the summary.
  async function loadHardware(panel) {
    const view = tabs.view;
    panel.replaceChildren(h("p", { class: "muted", id: "hardware-loading" }, "Loading hardware statistics…"));
    let body;
    try {
      body = await getJSON(state.base.href + "/system");
    } catch (err) {
      if (view !== tabs.view) return;
      panel.replaceChildren(h("div", { class: "error", id: "hardware-error" },
        "could not load the hardware statistics: " + (err.message || err)));
      return;
    }
    if (view !== tabs.view) return;
    const keys = (body.keys || []).filter(isSystemKey).sort();
    if (!keys.length) {
      panel.replaceChildren(h("div", { class: "card", id: "hardware-empty" }, h("h2", {}, "Hardware"),
        h("p", { class: "muted" }, "No hardware statistics were recorded for this run's participants."),
        h("p", {}, "Run a monitor on each participant's machine beside its training, e.g. ",
          code("synmlops monitor --collaboration " + JSON.stringify(route().ids[0] || "") +
            " --participant <id> --tracking-uri " + ROOT.origin),
          ", or in Python ", code("with run.monitor(\"<participant>\"): ..."),
          ". Samples are attached to the participant's runs by time.")));
      return;
    }
    const charts = keys.map((k) => h("div", { class: "chart", dataset: { systemKey: k, state: "loading" } },
      h("h3", {}, k.replace(/^system\//, "")), h("div", { class: "plot" }),
      h("p", { class: "chart-state loading", role: "status" }, "loading…")));
    panel.replaceChildren(
      heatmapCard(body),
      h("div", { class: "card", id: "hardware" },
        h("div", { class: "card-head" }, h("h2", {}, "Hardware statistics"),
          h("span", { class: "muted small" }, "seconds since the run's start; shaded bands are rounds")),
        h("div", { class: "charts", id: "hardware-charts" }, charts)));
    document.body.dataset.hardwareCharts = String(keys.length);
    keys.forEach((k, i) => plotSystem(charts[i], k, body));
  }

  function plotSystem(el, key, body) {
    const names = Object.keys(body.participants).filter((p) => (body.participants[p].series || {})[key]);
    const all = Object.keys(body.participants);
    const lines = names.map((p) => body.participants[p].series[key]);
    if (!lines.some((l) => l.seconds.length)) { setChartState(el, "empty", "no samples of this statistic"); return; }
    // Points are put on a common x: tenths of a second, coarser when the run is long, so a
    // chart holds at most ~4,000 positions whatever the run's length (the last sample wins).
    let lo = Infinity, hi = -Infinity;
    for (const l of lines) for (const s of l.seconds) { if (s < lo) lo = s; if (s > hi) hi = s; }
    const res = Math.max(0.1, (hi - lo) / 4000);
    const bin = (s) => Math.round(s / res) * res;
    const xs = [...new Set(lines.flatMap((l) => l.seconds.map(bin)))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = [xs, ...lines.map((l) => {
      const ys = new Array(xs.length).fill(null);
      l.seconds.forEach((s, i) => { ys[index.get(bin(s))] = l.values[i]; });
      return ys;
    })];
    const rounds = body.rounds || [];
    const holder = el.querySelector(".plot");
    const tip = h("div", { class: "tip" });
    const bands = (u) => {
      const ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      ctx.save();
      ctx.beginPath(); ctx.rect(u.bbox.left, top, u.bbox.width, height); ctx.clip();
      ctx.font = Math.round(10 * devicePixelRatio) + "px system-ui, sans-serif";
      ctx.textBaseline = "top";
      rounds.forEach((r, i) => {
        const x0 = u.valToPos(r.start, "x", true), x1 = u.valToPos(r.end, "x", true);
        if (i % 2 === 0) { ctx.fillStyle = "rgba(36, 87, 197, 0.06)"; ctx.fillRect(x0, top, x1 - x0, height); }
        ctx.fillStyle = "rgba(36, 87, 197, 0.45)";
        ctx.fillRect(Math.round(x1), top, Math.max(1, devicePixelRatio), height);
        if (x1 - x0 > 16 * devicePixelRatio) { ctx.fillStyle = "#6b7685"; ctx.fillText("R" + r.round, x0 + 3 * devicePixelRatio, top + 2); }
      });
      ctx.restore();
    };
    const opts = {
      width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
      legend: { show: false }, cursor: { points: { size: 6 }, focus: { prox: 24 } }, focus: { alpha: 0.35 },
      // Every round's band is in view, also where no sample falls.
      scales: { x: { time: false, range: (u, mn, mx) => rounds.length
        ? [Math.min(mn, rounds[0].start), Math.max(mx, rounds[rounds.length - 1].end)] : [mn, mx] } },
      axes: [{ label: "seconds", labelSize: 18, size: 34, stroke: "#6b7685", grid: { stroke: "#eef1f5" } },
             { size: 56, stroke: "#6b7685", grid: { stroke: "#eef1f5" } }],
      series: [{ label: "s" }, ...names.map((n) => ({
        label: n, stroke: color(all.indexOf(n)), width: 1.4, spanGaps: true, points: { show: false } }))],
      hooks: {
        drawAxes: [bands],
        setCursor: [(u) => showTip(u, tip, "second")],
        draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }],
      },
    };
    const u = new uPlot(opts, data, holder);
    u.over.append(tip);
    const chart = { u, names, el, lines: {} };
    tabs.hw.push(chart);
    holder.__chart = chart;
    resizer.observe(holder);
    el.dataset.lines = String(names.length);
    el.dataset.rounds = String(rounds.length);
  }

  // Participants × rounds, one coloured cell each (light: low, dark red: high), so the
  // straggler's long rounds or a participant's memory peak stand out; the value on hover.
  const FIGURES = [
    ["duration_seconds", "Round duration", "s"], ["cpu_mean_percentage", "CPU mean (machine)", "%"],
    ["process_cpu_mean_percentage", "CPU mean (process)", "%"], ["memory_peak_megabytes", "Memory peak (machine)", "MB"],
    ["process_memory_peak_megabytes", "Memory peak (process)", "MB"], ["samples", "Samples", ""],
  ];
  function heatmapCard(body) {
    const summary = body.summary || { participants: [], rounds: [] };
    const figures = FIGURES.filter(([k]) => summary[k]);
    const box = h("div", {});
    const select = h("select", { id: "heatmap-figure", "aria-label": "Figure", onchange: () => draw() },
      figures.map(([k, label]) => h("option", { value: k }, label)));
    function draw() {
      const [key, label, unit] = figures.find(([k]) => k === select.value) || figures[0];
      const matrix = summary[key];
      const values = matrix.flat().filter((v) => typeof v === "number");
      const lo = Math.min(...values), hi = Math.max(...values);
      const shade = (v) => {
        const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
        return "background:hsl(" + Math.round(50 - 50 * t) + ", 85%, " + Math.round(92 - 44 * t) + "%);"
          + (t > 0.6 ? "color:#fff" : "");
      };
      box.replaceChildren(h("div", { class: "scroll" }, h("table", { id: "heatmap", class: "heatmap", dataset: { figure: key } },
        h("thead", {}, h("tr", {}, h("th", {}, "Participant"), summary.rounds.map((r) => h("th", { class: "num" }, "R" + r)))),
        h("tbody", {}, summary.participants.map((p, i) => h("tr", { dataset: { participant: p } }, h("td", {}, p),
          summary.rounds.map((r, j) => {
            const v = matrix[i][j];
            const text = p + ", round " + r + ": " + (v === null ? "nothing recorded" : fmtNum(v) + (unit ? " " + unit : ""));
            return h("td", { class: "num heat" + (v === null ? " none" : ""), dataset: { round: r }, title: text,
              style: v === null ? null : shade(v) }, v === null ? "·" : fmtNum(typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 10) / 10 : v));
          })))))));
      box.dataset.label = label;
    }
    if (!figures.length || !summary.participants.length || !summary.rounds.length) {
      return h("div", { class: "card", id: "heatmap-card" }, h("h2", {}, "Participants × rounds"),
        h("p", { class: "muted" }, "No rounds to summarise: the run logs no round-level metric yet."));
    }
    draw();
    return h("div", { class: "card", id: "heatmap-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Participants × rounds"), select,
        h("span", { class: "muted small" }, "darker is higher; hover a cell for its value")), box);
  }

  // ----- Logs: a virtualized list. Only the rows in view are in the DOM (fixed row height);
  // older pages are fetched (before=) as the user scrolls up, newer ones (after=) as they
  // scroll down, and at most LOG_KEPT records are held: the far end is dropped and fetched
  // again when needed. While the run is RUNNING, after=<last id> is polled every 2 s.
  const LOG_ROW = 24, LOG_PAGE = 1000, LOG_KEPT = 20000, LOG_POLL = 2000, LOG_OVERSCAN = 10;
  const LEVELS = [["", "any level"], ["DEBUG", "DEBUG+"], ["INFO", "INFO+"], ["WARNING", "WARNING+"],
    ["ERROR", "ERROR+"], ["CRITICAL", "CRITICAL"]];
  function loadLogs(panel) {
    const view = tabs.view;
    const run = state.run;
    const participant = h("select", { id: "log-participant", "aria-label": "Participant" },
      h("option", { value: "" }, "every participant"), run.participants.map((p) => h("option", { value: p.id }, p.id)));
    const level = h("select", { id: "log-level", "aria-label": "Minimum level" }, LEVELS.map(([v, t]) => h("option", { value: v }, t)));
    const role = h("select", { id: "log-role", "aria-label": "Role" }, h("option", { value: "" }, "any role"),
      ["TTP", "WKR", "DIR", "SYS"].map((r) => h("option", { value: r }, r)));
    const text = h("input", { id: "log-text", type: "search", placeholder: "message contains…", "aria-label": "Text" });
    const status = h("span", { class: "muted small", id: "log-status" });
    const scroller = h("div", { class: "log-scroll", id: "log-scroll", tabindex: "0" });
    const spacer = h("div", { class: "log-spacer" });
    scroller.append(spacer);
    const detail = h("div", { class: "log-detail", id: "log-detail", hidden: true });
    const empty = h("div", { class: "log-empty", id: "logs-empty", hidden: true });
    const head = h("div", { class: "log-row log-head" },
      ["Time", "Level", "Participant", "Logger", "Message"].map((t) => h("span", { class: "log-" + t.toLowerCase() }, t)));
    panel.replaceChildren(h("div", { class: "card", id: "logs" },
      h("div", { class: "card-head" }, h("h2", {}, "Logs"), status),
      h("div", { class: "log-filters" }, participant, level, role, text),
      empty, h("div", { class: "log-table" }, head, scroller), detail));

    const L = { records: [], older: false, newer: false, busy: false, gen: 0, selected: null, running: run.status === "RUNNING" };
    tabs.logs = L;
    const params = (extra) => {
      const url = new URL(state.base.href + "/logs");
      if (participant.value) url.searchParams.set("participant", participant.value);
      if (level.value) url.searchParams.set("level", level.value);
      if (role.value) url.searchParams.set("role", role.value);
      if (text.value.trim()) url.searchParams.set("q", text.value.trim());
      for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
      return url;
    };
    const filtered = () => Boolean(participant.value || level.value || role.value || text.value.trim());
    const atBottom = () => scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - LOG_ROW;
    const first = () => (L.records.length ? L.records[0].id : null);
    const last = () => (L.records.length ? L.records[L.records.length - 1].id : null);

    const size = () => { spacer.style.height = L.records.length * LOG_ROW + "px"; };
    function paint() {
      size();
      const top = scroller.scrollTop, height = scroller.clientHeight || 400;
      const from = Math.max(0, Math.floor(top / LOG_ROW) - LOG_OVERSCAN);
      const to = Math.min(L.records.length, Math.ceil((top + height) / LOG_ROW) + LOG_OVERSCAN);
      const rows = [];
      for (let i = from; i < to; i++) {
        const r = L.records[i];
        const when = new Date(r.timestamp);
        rows.push(h("div", { class: "log-row " + r.level_name + (L.selected === r.id ? " selected" : ""),
          style: "top:" + i * LOG_ROW + "px", dataset: { id: r.id }, title: r.message.length > 120 ? r.message.slice(0, 2000) : null },
          h("span", { class: "log-time", title: r.time }, when.toLocaleTimeString([], { hour12: false }) + "." + String(when.getMilliseconds()).padStart(3, "0")),
          h("span", { class: "log-level" }, r.level_name),
          h("span", { class: "log-participant" }, r.participant || (r.role || "—")),
          h("span", { class: "log-logger" }, r.logger),
          h("span", { class: "log-message" }, r.message.split("\n", 1)[0])));
      }
      spacer.replaceChildren(...rows);
      status.textContent = L.records.length
        ? L.records.length.toLocaleString() + " records held (#" + first() + "–#" + last() + ")"
          + (L.older ? ", older above" : "") + (L.newer ? ", newer below" : "") + (L.running && !L.newer ? " · live" : "")
        : "";
      scroller.dataset.records = String(L.records.length);
      scroller.dataset.first = String(first() ?? "");
      scroller.dataset.last = String(last() ?? "");
    }
    L.paint = paint;
    let frame = 0;
    const schedule = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; paint(); edges(); }); };

    async function fetchPage(extra) {
      const gen = L.gen;
      const body = await getJSON(params(Object.assign({ limit: String(LOG_PAGE) }, extra)));
      if (view !== tabs.view || gen !== L.gen) return null;
      return body;
    }
    // Near the top: older records; near the bottom with newer ones dropped: those again.
    async function edges() {
      if (L.busy || !L.records.length) return;
      const nearTop = scroller.scrollTop < LOG_ROW * 40, nearEnd = scroller.scrollTop + scroller.clientHeight > scroller.scrollHeight - LOG_ROW * 40;
      if (!(nearTop && L.older) && !(nearEnd && L.newer)) return;
      L.busy = true;
      try {
        if (nearTop && L.older) {
          const body = await fetchPage({ before: String(first()) });
          if (!body) return;
          L.records = body.records.concat(L.records);
          L.older = body.more;
          size();
          scroller.scrollTop += body.records.length * LOG_ROW;  // the rows in view stay put
          const extra = L.records.length - LOG_KEPT;
          if (extra > 0) { L.records.splice(L.records.length - extra, extra); L.newer = true; }
        } else {
          const body = await fetchPage({ after: String(last()) });
          if (!body) return;
          L.records = L.records.concat(body.records);
          L.newer = body.more;
          const extra = L.records.length - LOG_KEPT;
          if (extra > 0) { L.records.splice(0, extra); L.older = true; scroller.scrollTop -= extra * LOG_ROW; size(); }
        }
        document.body.dataset.logPages = String(+(document.body.dataset.logPages || 0) + 1);
      } catch (err) {
        status.textContent = "could not load more records: " + (err.message || err);
      } finally {
        L.busy = false;
      }
      paint();
      schedule();
    }
    scroller.addEventListener("scroll", schedule, { passive: true });
    new ResizeObserver(() => { if (scroller.isConnected) schedule(); }).observe(scroller);
    scroller.addEventListener("click", (ev) => {
      const row = ev.target.closest(".log-row[data-id]");
      if (!row) return;
      const r = L.records.find((x) => x.id === +row.dataset.id);
      if (!r) return;
      L.selected = L.selected === r.id ? null : r.id;
      detail.hidden = L.selected === null;
      if (!detail.hidden) {
        detail.replaceChildren(
          h("div", { class: "card-head" }, h("b", {}, "#" + r.id + " · " + r.level_name + " · " + r.logger),
            h("span", { class: "muted small" }, r.time + (r.participant ? " · " + r.participant : "") + (r.role ? " · " + r.role : "")),
            h("button", { class: "btn", type: "button", onclick: () => { L.selected = null; detail.hidden = true; paint(); } }, "Close")),
          h("pre", { class: "log-message-full" }, r.message),
          h("pre", { class: "log-fields" }, JSON.stringify(r.fields || {}, null, 2)));
      }
      paint();
    });

    async function reload() {
      L.gen += 1;
      L.records = []; L.older = false; L.newer = false; L.selected = null; L.busy = true;
      detail.hidden = true;
      status.textContent = "loading…";
      delete scroller.dataset.state;
      let body;
      try {
        body = await fetchPage({});
      } catch (err) {
        L.busy = false;
        if (view !== tabs.view) return;
        status.textContent = "";
        empty.hidden = false;
        empty.className = "log-empty error";
        empty.textContent = "could not load the log records: " + (err.message || err);
        scroller.dataset.state = "error";
        return;
      } finally {
        L.busy = false;
      }
      if (!body) return;
      L.records = body.records;
      L.older = body.more;
      empty.hidden = L.records.length > 0;
      empty.className = "log-empty muted";
      empty.replaceChildren(...(filtered() ? ["No records match these filters."]
        : ["No log records for this run yet. Send them with ", code("run.log_handler()"),
           " (Python logging, from the tracker's run), or point synergos_logger's GELF at ",
           code("synmlops serve --gelf-port 12201"), "."]));
      paint();
      scroller.scrollTop = scroller.scrollHeight;
      paint();
      scroller.dataset.state = "loaded";
    }
    // The live tail: new records are appended; the view follows them when it was at the bottom.
    async function tail() {
      if (view !== tabs.view) return;
      if (!L.busy && !L.newer) {
        const follow = atBottom();
        try {
          const after = last();
          const body = await fetchPage(after === null ? {} : { after: String(after) });
          if (body && body.records.length && last() === after) {
            L.records = L.records.concat(body.records);
            L.newer = after !== null && body.more;
            const extra = L.records.length - LOG_KEPT;
            if (extra > 0) { L.records.splice(0, extra); L.older = true; scroller.scrollTop -= extra * LOG_ROW; }
            empty.hidden = true;
            paint();
            if (follow) { scroller.scrollTop = scroller.scrollHeight; paint(); }
          }
          document.body.dataset.logPolls = String(+(document.body.dataset.logPolls || 0) + 1);
        } catch (err) { /* the next poll tries again */ }
      }
      if (++L.polls % 15 === 0) {  // every 30 s: is the run still going?
        try { L.running = (await getJSON(state.base.href)).status === "RUNNING"; } catch (err) { /* keep polling */ }
      }
      if (L.running && view === tabs.view) tabs.timers.push(setTimeout(tail, LOG_POLL));
    }
    L.polls = 0;
    let typing = 0;
    for (const el of [participant, level, role]) el.addEventListener("change", reload);
    text.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(reload, 300); tabs.timers.push(typing); });
    reload();
    if (L.running) tabs.timers.push(setTimeout(tail, LOG_POLL));
  }

  // ---------- study view ----------
  // One study: counts by state (refreshed every 2 s while a trial runs or waits), the best
  // trial, the optimization history, parallel coordinates of the varying parameters coloured
  // by the metric, parameter importance and every trial with its participants' spread.
  const POLL_MS = 2000;
  let studyPoll = null;
  function chartBox(id, title) {
    return h("div", { class: "chart", id, dataset: { chartView: String(state.chartView), state: "loading" } },
      h("h3", {}, title), h("div", { class: "plot" }),
      h("p", { class: "chart-state loading", role: "status" }, "loading…"));
  }
  const stateCounts = (counts) => h("div", { class: "stats", id: "study-counts" },
    ["FINISHED", "RUNNING", "SCHEDULED", "FAILED", "KILLED"].map((k) =>
      h("div", { class: "stat", dataset: { state: k } }, h("b", {}, counts[k] || 0), k.toLowerCase())));
  const busy = (study) => (study.counts.RUNNING || 0) + (study.counts.SCHEDULED || 0) > 0;
  // Red (worst) to green (best) along the study's direction.
  function valueColor(v, lo, hi, direction) {
    let t = hi > lo ? (v - lo) / (hi - lo) : 1;
    if (direction === "minimize") t = 1 - t;
    return "hsl(" + Math.round(t * 120) + ", 70%, 42%)";
  }

  async function renderStudy(main, ids) {
    crumbs(ids.slice(0, 3), false);
    const url = new URL("studies/" + path(...ids), API);
    const study = await getJSON(url);
    drawStudy(main, ids, study);
    const view = state.chartView;
    const poll = async () => {
      studyPoll = null;
      if (view !== state.chartView) return;
      try {
        const fresh = await getJSON(url);
        if (view !== state.chartView) return;
        const changed = JSON.stringify(fresh.counts) !== JSON.stringify(study.counts)
          || JSON.stringify(fresh.history) !== JSON.stringify(study.history);
        if (changed) {
          const old = state.charts.history;
          if (old) { resizer.unobserve(old.u.root.parentNode); old.u.destroy(); delete state.charts.history; }
          Object.assign(study, fresh);
          drawStudy(main, ids, study);
        }
        else document.getElementById("study-counts").replaceWith(stateCounts(fresh.counts));
        document.body.dataset.studyRefreshed = String(+(document.body.dataset.studyRefreshed || 0) + 1);
      } catch (err) { /* the next poll tries again */ }
      if (busy(study) && view === state.chartView) studyPoll = setTimeout(poll, POLL_MS);
    };
    if (busy(study)) studyPoll = setTimeout(poll, POLL_MS);
  }

  function drawStudy(main, ids, study) {
    const view = state.chartView;
    Object.assign(document.body.dataset, { charts: "2", chartsDrawn: "0", chartsSettled: "0" });
    const history = chartBox("history-chart", "Optimization history: " + (study.metric || "no metric") + " by trial");
    const parallel = chartBox("parallel-chart", "Parallel coordinates (colour: " + (study.metric || "metric") + ")");
    main.replaceChildren(
      h("div", { class: "sub", style: "margin-bottom:4px" }, study.default ? "Study (runs named optim_run_*)" : "Study"),
      h("h1", {}, study.study),
      h("div", { class: "sub" },
        h("span", {}, (study.direction || "") + " " + (study.metric || "—")),
        h("span", {}, study.trials.length + " trials"),
        study.created ? h("span", {}, "created " + fmtTime(study.created)) : null),
      stateCounts(study.counts),
      h("div", { class: "grid2" }, bestCard(ids, study), importanceCard(study)),
      h("div", { class: "card" }, h("h2", {}, "Trials over time"), h("div", { class: "charts study-charts" }, history, parallel)),
      trialsCard(ids, study),
      searchSpaceCard(study));
    if (view !== state.chartView) return;
    drawHistory(history, study);
    drawParallel(parallel, study);
  }

  // A trial's hardware cost (summed over its participants' samples), short, and its title
  // with every participant's figures; "—" when no participant was sampled.
  const round1 = (v) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);
  function costText(hw) {
    if (!hw) return "—";
    const parts = [];
    if (hw.cpu_seconds !== null) parts.push(fmtNum(round1(hw.cpu_seconds)) + " CPU·s");
    if (hw.gpu_seconds !== null) parts.push(fmtNum(round1(hw.gpu_seconds)) + " GPU·s");
    if (hw.memory_peak_megabytes !== null) parts.push(fmtNum(Math.round(hw.memory_peak_megabytes)) + " MB peak");
    if (hw.network_megabytes !== null) parts.push(fmtNum(round1(hw.network_megabytes)) + " MB net");
    return parts.length ? parts.join(" · ") : "—";
  }
  function costTitle(hw) {
    if (!hw) return "no hardware samples";
    return Object.entries(hw.participants).map(([p, v]) => p + ": " + costText(v)).join("\n");
  }
  const costliestText = (hw) => (hw && hw.costliest
    ? hw.costliest.participant + " (" + fmtNum(round1(hw.costliest.value)) + (hw.costliest.by === "gpu_seconds" ? " GPU·s)" : " CPU·s)")
    : "—");

  function bestCard(ids, study) {
    const best = study.best;
    const body = best
      ? [h("div", { class: "best-value" }, fmtNum(best.value)),
         h("p", {}, link(runHref(ids[0], ids[1], ids[2], best.run), best.run), " · trial " + best.number),
         h("p", { class: "best-hardware", title: costTitle(best.hardware) }, "Hardware: " + costText(best.hardware),
           best.hardware && best.hardware.costliest ? " · costliest " + costliestText(best.hardware) : null),
         paramsTable(best.hyperparameters)]
      : [h("p", { class: "muted" }, "No finished trial with a value of " + (study.metric || "the metric") + " yet.")];
    return h("div", { class: "card", id: "best-trial" }, h("h2", {}, "Best trial"), body);
  }

  function importanceCard(study) {
    const imp = study.importance;
    const names = Object.keys(imp.params);
    return h("div", { class: "card", id: "importance" }, h("h2", {}, "Parameter importance"),
      names.length
        ? h("div", { class: "bars" }, names.map((n) => h("div", { class: "bar-row", dataset: { param: n } },
            h("span", { class: "bar-name" }, n),
            h("span", { class: "bar" }, h("span", { style: "width:" + (imp.params[n] * 100).toFixed(1) + "%" })),
            h("span", { class: "num" }, (imp.params[n] * 100).toFixed(1) + " %"))))
        : h("p", { class: "muted" }, imp.note || "Not enough finished trials."),
      h("p", { class: "muted small" }, imp.method + ", " + imp.trials_used + " trials"));
  }

  function trialsCard(ids, study) {
    if (!study.trials.length) return h("div", { class: "card", id: "trials" }, h("h2", {}, "Trials"), h("p", { class: "muted" }, "No trials yet."));
    const names = [...new Set(study.trials.flatMap((t) => Object.keys(t.hyperparameters)))].sort();
    const shownNames = study.search_space ? Object.keys(study.search_space) : names;
    const values = study.trials.flatMap((t) => (t.spread ? [t.spread.min, t.spread.max] : []));
    const lo = Math.min(...values), hi = Math.max(...values);
    const rangeBar = (sp) => {
      if (!sp || !(hi > lo)) return null;
      const left = ((sp.min - lo) / (hi - lo)) * 100, width = Math.max(1, ((sp.max - sp.min) / (hi - lo)) * 100);
      return h("span", { class: "range", title: fmtNum(sp.min) + " – " + fmtNum(sp.max) },
        h("span", { style: "left:" + left + "%;width:" + width + "%" }));
    };
    const table = h("table", { id: "trials-table" },
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "num" }, "#"),
        h("th", { class: "num", title: "the tuner's own trial number (Optuna) or id (Ray)" }, "Tuner #"), h("th", {}, "Run"), h("th", {}, "State"),
        shownNames.map((n) => h("th", {}, n)), h("th", { class: "num" }, study.metric || "value"),
        h("th", {}, "Participants: min – max"), h("th", {}, "Worst participant"), h("th", { class: "num" }, "Wall time"),
        h("th", { title: "summed over the participants shown" }, "Hardware"), h("th", {}, "Costliest participant"))),
      h("tbody", {}, study.trials.map((t) => h("tr", { dataset: { trial: t.number, state: t.state }, class: t.outside_space.length ? "outside" : "" },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: JSON.stringify([ids[0], ids[1], ids[2], t.run]), "aria-label": "compare " + t.run })),
        h("td", { class: "num" }, t.number),
        h("td", { class: "num tuner" }, t.tuner ? String(t.tuner.trial) : "—"),
        h("td", {}, link(runHref(ids[0], ids[1], ids[2], t.run), t.run)),
        h("td", {}, h("span", { class: "badge " + t.state }, t.state)),
        shownNames.map((n) => h("td", { class: t.outside_space.includes(n) ? "outside-value" : "",
          title: t.outside_space.includes(n) ? "outside the search space" : null }, fmtParam(t, n))),
        h("td", { class: "num" + (study.best && study.best.number === t.number ? " best" : "") }, fmtNum(t.value),
          t.value === null && typeof t.last_value === "number"
            ? h("span", { class: "muted last-value", title: "no value (the trial failed); the last value it logged" }, " last " + fmtNum(t.last_value)) : null),
        h("td", { class: "spread" }, t.spread ? [fmtNum(t.spread.min) + " – " + fmtNum(t.spread.max), rangeBar(t.spread)] : "—"),
        h("td", {}, t.spread ? t.spread.worst.participant + " (" + fmtNum(t.spread.worst.value) + ")" : "—"),
        h("td", { class: "num" }, t.wall_time_s === null ? "—" : fmtNum(Math.round(t.wall_time_s)) + " s"),
        h("td", { class: "hardware", title: costTitle(t.hardware) }, costText(t.hardware)),
        h("td", { class: "costliest" }, costliestText(t.hardware))))));
    const outside = study.trials.filter((t) => t.outside_space.length).length;
    return h("div", { class: "card", id: "trials" },
      h("div", { class: "card-head" }, h("h2", {}, "Trials"), compareButton(table),
        outside ? h("span", { class: "muted", id: "outside-note" }, outside + " outside the search space (marked)") : null,
        study.scoped ? h("span", { class: "muted", id: "scoped-note" }, "participant figures: your participants only") : null),
      h("div", { class: "scroll" }, table));
  }

  // A trial's hyperparameter as its type says: absent "—", None "null", a string that reads as
  // another type quoted ("True", "0.5"), a float strict JSON cannot hold ("NaN") as its text.
  function fmtParam(t, n) {
    if (!(n in t.hyperparameters)) return "—";
    const v = t.hyperparameters[n], type = (t.hyperparameter_types || {})[n];
    if (v === null) return "null";
    if (typeof v === "string") {
      const looks = type === "str" && (v !== v.trim() || /^(true|false|none|null|nan|[-+]?inf(inity)?|[-+]?[0-9.]+([eE][-+]?[0-9]+)?|[[{"].*)$/i.test(v));
      return looks ? JSON.stringify(v) : v;
    }
    return typeof v === "object" ? JSON.stringify(v) : typeof v === "boolean" ? (v ? "True" : "False") : fmtNum(v);
  }

  function searchSpaceCard(study) {
    if (!study.search_space) return null;
    const space = study.search_space;
    return h("div", { class: "card", id: "search-space" }, h("h2", {}, "Search space"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Values"))),
        h("tbody", {}, Object.keys(space).map((n) => h("tr", {}, h("td", {}, n), h("td", {}, space[n]._type),
          h("td", {}, JSON.stringify(space[n]._value))))))));
  }

  function drawHistory(el, study) {
    const points = study.history;
    if (!points.length) { setChartState(el, "empty", "no finished trial with a value yet"); return; }
    const holder = el.querySelector(".plot");
    const data = [points.map((p) => p.number), points.map((p) => p.value), points.map((p) => p.best)];
    const opts = {
      width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
      legend: { show: true }, scales: { x: { time: false } },
      axes: [{ label: "trial", labelSize: 18, size: 34, stroke: "#6b7685", grid: { stroke: "#eef1f5" } },
             { size: 56, stroke: "#6b7685", grid: { stroke: "#eef1f5" } }],
      series: [{ label: "trial" },
        { label: "value", stroke: "#2457c5", width: 0, points: { show: true, size: 7, fill: "#2457c5" } },
        { label: "best so far", stroke: "#1a8a4a", width: 2 }],
      hooks: { draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }] },
    };
    const u = new uPlot(opts, data, holder);
    state.charts["history"] = { u, names: [], el, lines: {} };
    holder.__chart = state.charts["history"];
    resizer.observe(holder);
  }

  // Parallel coordinates on a canvas: one axis per varying parameter (log scale for log
  // search spaces, evenly spaced levels for choices) and the metric last; one line per
  // finished trial, coloured from worst (red) to best (green).
  function drawParallel(el, study) {
    const trials = study.trials.filter((t) => t.state === "FINISHED" && typeof t.value === "number");
    const names = (study.search_space ? Object.keys(study.search_space)
      : [...new Set(trials.flatMap((t) => Object.keys(t.hyperparameters)))].sort())
      .filter((n) => new Set(trials.map((t) => JSON.stringify(t.hyperparameters[n]))).size > 1);
    if (!trials.length || !names.length) {
      setChartState(el, "empty", trials.length ? "no parameter varies across the trials" : "no finished trial with a value yet");
      return;
    }
    const axes = names.map((n) => {
      const raw = trials.filter((t) => n in t.hyperparameters).map((t) => t.hyperparameters[n]); // absent: not applicable
      const numeric = raw.every((v) => typeof v === "number");
      const log = numeric && study.search_space && /log/.test(study.search_space[n]._type) && raw.every((v) => v > 0);
      if (!numeric) {
        const levels = [...new Set(raw.map((v) => JSON.stringify(v)))].sort();
        return { name: n, pos: (v) => (v === undefined ? null : levels.length > 1 ? levels.indexOf(JSON.stringify(v)) / (levels.length - 1) : 0.5),
          ticks: levels.map((l, i) => [levels.length > 1 ? i / (levels.length - 1) : 0.5, l.replace(/^"|"$/g, "")]) };
      }
      const f = log ? Math.log : (v) => v;
      const lo = Math.min(...raw.map(f)), hi = Math.max(...raw.map(f));
      const pos = (v) => (typeof v !== "number" ? null : hi > lo ? (f(v) - lo) / (hi - lo) : 0.5);
      return { name: n, pos, ticks: [[0, fmtNum(Math.min(...raw))], [1, fmtNum(Math.max(...raw))]] };
    });
    const vals = trials.map((t) => t.value);
    const vlo = Math.min(...vals), vhi = Math.max(...vals);
    axes.push({ name: study.metric, pos: (v) => (vhi > vlo ? (v - vlo) / (vhi - vlo) : 0.5),
      ticks: [[0, fmtNum(vlo)], [1, fmtNum(vhi)]], metric: true });
    const holder = el.querySelector(".plot");
    const canvas = h("canvas", { id: "parallel-canvas" });
    holder.append(canvas);
    const paint = () => {
      const width = Math.max(200, Math.floor(holder.clientWidth) || 420), height = CHART_HEIGHT;
      const ratio = window.devicePixelRatio || 1;
      canvas.width = width * ratio; canvas.height = height * ratio;
      canvas.style.width = width + "px"; canvas.style.height = height + "px";
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      const top = 22, bottom = height - 24, left = 40, right = width - 48;
      const x = (i) => left + (axes.length > 1 ? (i * (right - left)) / (axes.length - 1) : 0);
      const y = (p) => bottom - p * (bottom - top);
      ctx.lineWidth = 1.6;
      trials.forEach((t) => {
        ctx.strokeStyle = valueColor(t.value, vlo, vhi, study.direction);
        ctx.globalAlpha = 0.8;
        ctx.beginPath();
        let started = false;
        axes.forEach((a, i) => {
          const p = a.metric ? a.pos(t.value) : a.pos(t.hyperparameters[a.name]);
          if (p === null || p < 0) { started = false; return; }
          if (started) ctx.lineTo(x(i), y(p)); else { ctx.moveTo(x(i), y(p)); started = true; }
        });
        ctx.stroke();
      });
      ctx.globalAlpha = 1;
      ctx.font = "11px system-ui, sans-serif";
      ctx.textAlign = "center";
      axes.forEach((a, i) => {
        ctx.strokeStyle = "#6b7685"; ctx.lineWidth = 1;
        ctx.beginPath(); ctx.moveTo(x(i), top); ctx.lineTo(x(i), bottom); ctx.stroke();
        ctx.fillStyle = "#1f2733";
        ctx.fillText(a.name.length > 18 ? a.name.slice(0, 17) + "…" : a.name, x(i), 12);
        ctx.fillStyle = "#6b7685";
        for (const [p, label] of a.ticks.slice(0, 8)) ctx.fillText(String(label).slice(0, 10), x(i), y(p) + (p === 0 ? 14 : p === 1 ? -4 : 4));
      });
    };
    paint();
    el.dataset.axes = String(axes.length);
    el.dataset.lines = String(trials.length);
    new ResizeObserver(() => { if (canvas.isConnected) paint(); }).observe(holder);
    setChartState(el, "drawn", "");
  }

  // ---------- compare view ----------
  async function renderCompare(main, refs) {
    crumbs([], false);
    if (refs.length < 2 || refs.length > MAX_COMPARED) {
      main.replaceChildren(h("div", { class: "error", id: "error" },
        "Compare 2 to " + MAX_COMPARED + " runs: tick them in a runs table, then Compare."));
      return;
    }
    const url = new URL("compare", API);
    for (const r of refs) url.searchParams.append("run", r);
    const body = await getJSON(url);
    const runs = body.runs;
    const label = (r) => r.run + (new Set(runs.map((x) => x.experiment)).size > 1 ? " (" + r.experiment + ")" : "");
    const head = (first) => h("thead", {}, h("tr", {}, h("th", {}, first),
      runs.map((r, i) => h("th", {}, h("span", { class: "sw", style: "background:" + color(i) }),
        link(runHref(r.collaboration, r.project, r.experiment, r.run), label(r))))));
    const diff = body.hyperparameters;
    const diffKeys = Object.keys(diff.differing);
    const commonKeys = Object.keys(diff.common);
    const keys = Object.keys(body.series);
    Object.assign(document.body.dataset, { charts: String(keys.length), chartsDrawn: "0", chartsSettled: "0" });
    const charts = keys.map((k) => chartBox(null, k));
    main.replaceChildren(
      h("div", { class: "sub", style: "margin-bottom:4px" }, "Comparison"),
      h("h1", {}, runs.length + " runs"),
      h("div", { class: "card", id: "hyperparameter-diff" }, h("h2", {}, "Hyperparameters that differ"),
        diffKeys.length ? h("div", { class: "scroll" }, h("table", { id: "hp-diff" }, head("Name"),
          h("tbody", {}, diffKeys.map((k) => h("tr", { dataset: { param: k } }, h("td", {}, k),
            diff.differing[k].map((v) => h("td", {}, v === null || v === undefined ? "— (not set)" : fmtNum(v))))))))
          : h("p", { class: "muted" }, "Every hyperparameter is the same."),
        commonKeys.length ? h("details", { id: "hp-common" }, h("summary", {}, commonKeys.length + " the same in every run"),
          paramsTable(diff.common)) : null),
      h("div", { class: "card", id: "final-metrics" }, h("h2", {}, "Final metrics"),
        h("div", { class: "scroll" }, h("table", { id: "final-table" }, head("Global"),
          h("tbody", {}, body.metrics.keys.map((k) => h("tr", {}, h("td", {}, k),
            body.metrics.global[k].map((v) => h("td", { class: "num" }, fmtNum(v)))))))),
        Object.keys(body.metrics.participants).map((p) => h("details", { class: "participant-final", dataset: { participant: p } },
          h("summary", {}, p),
          h("div", { class: "scroll" }, h("table", {}, head(p), h("tbody", {},
            Object.entries(body.metrics.participants[p]).map(([k, vs]) => h("tr", {}, h("td", {}, k),
              vs.map((v) => h("td", { class: "num" }, fmtNum(v))))))))))),
      h("div", { class: "card", id: "metrics" }, h("h2", {}, "Metrics, overlaid"),
        h("p", { class: "muted small" }, "Thick lines: each run's global value; thin: its participants."),
        keys.length ? h("div", { class: "charts", id: "charts" }, charts) : h("p", { class: "muted" }, "No metric key is common to these runs.")));
    keys.forEach((k, i) => plotCompared(charts[i], k, body.series[k], runs));
  }

  function plotCompared(el, key, entry, runs) {
    const lines = [];
    entry.runs.forEach((r, i) => {
      if (r.global) lines.push({ label: runs[i].run + " global", run: i, line: r.global, global: true });
      for (const [p, line] of Object.entries(r.participants)) lines.push({ label: runs[i].run + " " + p, run: i, line });
    });
    if (!lines.some((l) => l.line.steps.length)) { setChartState(el, "empty", "no points logged for this key"); return; }
    const holder = el.querySelector(".plot");
    const xs = [...new Set(lines.flatMap((l) => l.line.steps))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = [xs, ...lines.map((l) => {
      const ys = new Array(xs.length).fill(null);
      l.line.steps.forEach((st, i) => { ys[index.get(st)] = l.line.values[i]; });
      return ys;
    })];
    const tip = h("div", { class: "tip" });
    const opts = {
      width: Math.max(120, Math.floor(holder.clientWidth) || 420), height: CHART_HEIGHT,
      legend: { show: false }, scales: { x: { time: false } },
      cursor: { points: { size: 6 }, focus: { prox: 24 } },
      axes: [{ label: entry.axis, labelSize: 18, size: 34, stroke: "#6b7685", grid: { stroke: "#eef1f5" } },
             { size: 56, stroke: "#6b7685", grid: { stroke: "#eef1f5" } }],
      series: [{ label: entry.axis }, ...lines.map((l) => ({
        label: l.label, stroke: color(l.run), width: l.global ? 2.6 : 1, dash: l.global ? undefined : [4, 3], spanGaps: true,
      }))],
      hooks: {
        setCursor: [(u) => showTip(u, tip, entry.axis)],
        draw: [() => { if (el.dataset.state !== "drawn") setChartState(el, "drawn", ""); }],
      },
    };
    const u = new uPlot(opts, data, holder);
    u.over.append(tip);
    state.charts["compare:" + key] = { u, names: [], el, lines: {} };
    holder.__chart = state.charts["compare:" + key];
    resizer.observe(holder);
    el.dataset.lines = String(lines.length);
  }

  // ---------- data catalogue ----------
  // catalogue: every dataset by collaboration → participant → split; catalogue/<c>/<p>/<digest>:
  // one dataset's columns, profile and runs. The run page's "Data and lineage" card is below.
  const datasetHref = (c, p, digest) => "catalogue/" + path(c, p, digest);
  const shortDigest = (digest) => String(digest || "").slice(0, 12);
  const mlflowHash = (hash) => new URL("#/" + hash, ROOT).href;
  function runRef(r) {
    if (!r) return h("span", { class: "muted" }, "—");
    return h("span", { class: "run-ref" },
      link(runHref(r.collaboration, r.project, r.experiment, r.run), r.run,
        { title: [r.collaboration, r.project, r.experiment, r.run].join(" / ") }),
      r.start_time ? h("span", { class: "muted small" }, " " + fmtTime(r.start_time)) : null);
  }
  function rowsText(d) {
    if (d.rows !== null && d.rows !== undefined) return fmtNum(d.rows);
    if (d.src_count !== null && d.src_count !== undefined) return h("span", { title: "source count (the summary gives no row count)" }, fmtNum(d.src_count) + " src");
    return "—";
  }
  // Columns and their types as small chips that wrap; long schemas fold into a <details>.
  function columnChips(columns) {
    if (!columns || !columns.length) return h("span", { class: "muted" }, "—");
    const chips = h("span", { class: "col-chips" }, columns.map((c) =>
      h("span", { class: "col-chip", dataset: { column: c.name } }, c.name, h("i", {}, c.type))));
    if (columns.length <= 8) return chips;
    return h("details", { class: "col-fold" }, h("summary", {}, columns.length + " columns"), chips);
  }
  function catalogueCrumbs(parts) {
    const box = document.getElementById("crumbs");
    box.replaceChildren();
    parts.forEach(([text, href], i) => {
      if (i) box.append(h("span", { class: "sep" }, "/"));
      box.append(href ? link(href, text) : h("span", { class: "here" }, text));
    });
  }
  function kvTable(rows, id) {
    return h("div", { class: "scroll" }, h("table", { class: "kv", id },
      h("tbody", {}, rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) =>
        h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v instanceof Node ? v : typeof v === "object" ? JSON.stringify(v) : fmtNum(v)))))));
  }

  async function renderCatalogue(main) {
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
        h("div", { class: "stat" }, h("b", {}, collabs.length), "collaborations"),
        h("div", { class: "stat" }, h("b", {}, participants), "participants"),
        h("div", { class: "stat" }, h("b", {}, datasets.length), "datasets")),
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

  // One dataset: facts, columns, the profile as the participant summarised it, and its runs.
  async function renderDataset(main, ids) {
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
      for (const [k, v] of scalars) rows.push([k, Array.isArray(v) ? v.join(", ") : v]);
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

  // ----- the run page's "Data and lineage" card: datasets per participant and split, drift
  // against the project's previous and next runs, and dataset → participant run → federated
  // run → logged model → model version, left to right (hover a node to trace its path).
  const LINEAGE_COLUMNS = [["dataset", "Data"], ["participant_run", "Participant runs"], ["federated_run", "Federated run"],
    ["logged_model", "Models"], ["model_version", "Model versions"]];
  function dataLineageCard(run, ids) {
    const box = h("div", { class: "card", id: "data-lineage", dataset: { state: "loading" } }, h("h2", {}, "Data and lineage"),
      h("p", { class: "muted", id: "data-lineage-loading" }, "Loading datasets and lineage…"));
    const base = new URL("runs/" + path(...ids), API).href;
    Promise.all([getJSON(base + "/datasets"), getJSON(new URL("lineage/runs/" + path(...ids), API))])
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
  function reach(edges, id, where) {
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
  const modelHref = (name, version) => "models/" + path(name, version);
  const mlflowVersionHref = (name, version) => mlflowHash("models/" + enc(name) + "/versions/" + enc(version));
  const mlflowRunHref = (experimentId, runId) => mlflowHash("experiments/" + enc(experimentId) + "/runs/" + enc(runId));
  const mlflowModelHref = (experimentId, modelId) => mlflowHash("experiments/" + enc(experimentId) + "/models/" + enc(modelId));
  const external = (href, text, attrs) => h("a", Object.assign({ href, target: "_blank", rel: "noopener" }, attrs || {}), text);

  // options.current: the node this page is about (marked, and not linked to itself);
  // options.linkRun: link the federated run's node to its run page.
  function lineageGraph(lineage, options) {
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

  // ---------- a registered model version ----------
  // models/<name>/<version>: the version, and which data trained it: the part of its run's
  // lineage upstream of it (GET /lineage/models/{name}/{version}).
  async function renderModelVersion(main, ids) {
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
          h("p", { class: "muted small" }, participants.length + " participant run" + (participants.length === 1 ? "" : "s") + ": ",
            participants.map((p, i) => [i ? ", " : "", p.id])))),
      h("div", { class: "card", id: "model-lineage" },
        h("div", { class: "card-head lineage-head" }, h("h2", {}, "Lineage"),
          h("span", { class: "muted small" }, "what led to this version; hover or focus a node to trace its path")),
        lineageGraph(lineage, { current: here, linkRun: true })));
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

  // ---------- render ----------
  async function render() {
    const main = document.getElementById("main");
    const { view, ids } = route();
    // A run's JSON is asked for at once, beside the tree's, not after it.
    const runJSON = view === "run" ? getJSON(new URL("runs/" + path(...ids), API)) : null;
    if (runJSON) runJSON.catch(() => {});  // its error is shown below, once awaited
    try {
      if (!state.tree) await loadTree(); else drawTree();
      main.replaceChildren();
      main.scrollTop = 0;
      stopCharts();
      stopTabs();
      rendered = location.pathname + location.search;
      if (view === "run") {
        main.append(h("p", { class: "muted" }, "Loading run…"));
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
      main.replaceChildren(h("div", { class: "error", id: "error" }, String(err.message || err)));
    }
  }
  render();
})();
