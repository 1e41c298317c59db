// What the page holds between views: the tree (levels, opened experiments' pages, a search), the run shown, its charts and series.
export const state = {
  tree: null, pages: {}, open: new Set(), search: null, run: null, axis: "round", hidden: new Set(), charts: {}, series: {}, observer: null, chartView: 0,
  timings: { parse: 0, draw: 0 },  // ms spent parsing JSON and drawing charts, for benchmarks
};
window.__synergos = state;
