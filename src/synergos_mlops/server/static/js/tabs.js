// A run's tabs (Overview, Hardware, Logs), part of the URL, each loaded when first shown.
import { resizer } from "./charts.js";
import { h } from "./dom.js";
import { loadHardware } from "./hardware.js";
import { loadLogs } from "./logs.js";

// ---------- run tabs: Overview, Hardware, Logs ----------
// The tab is part of the URL (#hardware, #logs; the Overview has none), so a link opens it.
// Tabs switch without reloading; the Hardware and Logs tabs load when first shown.
const TABS = [["overview", "Overview"], ["hardware", "Hardware"], ["logs", "Logs"]];
export const tabOfUrl = () => {
  const name = location.hash.replace(/^#/, "") || new URLSearchParams(location.search).get("tab") || "overview";
  return TABS.some(([t]) => t === name) ? name : "overview";
};
export const tabs = { view: 0, loaded: new Set(), timers: [], hw: [], logs: null };
export function tabBar() {
  return h("div", { class: "tabs", role: "tablist", id: "run-tabs" }, TABS.map(([t, label]) =>
    h("button", { class: "tab", role: "tab", id: "tab-" + t, type: "button", dataset: { tab: t },
      "aria-controls": "panel-" + t, "aria-selected": "false",
      onclick: () => {
        if (tabOfUrl() === t) return;
        history.pushState(null, "", location.pathname + location.search + (t === "overview" ? "" : "#" + t));
        showTab(t);
      } }, label)));
}
export function showTab(name) {
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
export function stopTabs() {
  tabs.view += 1;
  tabs.loaded = new Set();
  for (const t of tabs.timers) clearTimeout(t);
  tabs.timers = [];
  for (const c of tabs.hw) { resizer.unobserve(c.u.root.parentNode); c.u.destroy(); }
  tabs.hw = [];
  tabs.logs = null;
  delete document.body.dataset.tab;
}
