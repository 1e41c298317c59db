// A run's Logs tab: a virtualized, filtered, live-tailed list of the run's log records.
import { getJSON } from "./api.js";
import { code, h } from "./dom.js";
import { noun } from "./format.js";
import { state } from "./state.js";
import { tabs } from "./tabs.js";

// ----- Logs: a virtualized list. Only the rows in view are in the DOM (fixed row height);
// older pages are fetched (before=) as the user scrolls up, newer ones (after=) as they
// scroll down, and at most LOG_KEPT records are held: the far end is dropped and fetched
// again when needed. While the run is RUNNING, after=<last id> is polled every 2 s.
const LOG_ROW = 24, LOG_PAGE = 1000, LOG_KEPT = 20000, LOG_POLL = 2000, LOG_OVERSCAN = 10;
const LEVELS = [["", "any level"], ["DEBUG", "DEBUG+"], ["INFO", "INFO+"], ["WARNING", "WARNING+"],
  ["ERROR", "ERROR+"], ["CRITICAL", "CRITICAL"]];
// A record's time of day to the millisecond (its full time is the element's title).
function clock(r) {
  const when = new Date(r.timestamp);
  return when.toLocaleTimeString([], { hour12: false }) + "." + String(when.getMilliseconds()).padStart(3, "0");
}
export function loadLogs(panel) {
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
        rows.push(h("div", { class: "log-row " + r.level_name + (L.selected === r.id ? " selected" : ""),
        style: "top:" + i * LOG_ROW + "px", dataset: { id: r.id }, title: r.message.length > 120 ? r.message.slice(0, 2000) : null },
        h("span", { class: "log-time", title: r.time }, clock(r)),
        h("span", { class: "log-level" }, r.level_name),
        h("span", { class: "log-participant" }, r.participant || (r.role || "—")),
        h("span", { class: "log-logger" }, r.logger),
        h("span", { class: "log-message" }, r.message.split("\n", 1)[0])));
    }
    spacer.replaceChildren(...rows);
    status.textContent = L.records.length
      ? L.records.length.toLocaleString() + " " + noun(L.records.length, "record") + ", "
        + clock(L.records[0]) + " – " + clock(L.records[L.records.length - 1])
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
        h("div", { class: "card-head" }, h("b", {}, r.level_name + " · " + r.logger),
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
