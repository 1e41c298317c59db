// A run's series as the page reads them: typed (base64 int64 steps, float64 values), asked
// for at a chart's width (at most two points per pixel column, the lowest and the highest)
// and, once a chart is zoomed, for the steps in view, every point when they fit.
import { getJSON } from "./api.js";

function bytes(text) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}
// int64 little-endian → numbers (exact up to 2^53, as any step a chart can place).
function int64s(text, count) {
  const words = new Int32Array(bytes(text).buffer, 0, count * 2);
  const out = new Array(count);
  for (let i = 0; i < count; i++) out[i] = (words[2 * i] >>> 0) + words[2 * i + 1] * 4294967296;
  return out;
}
function float64s(text, count) {
  return new Float64Array(bytes(text).buffer, 0, count);
}
// One typed series → { steps: number[], values: Float64Array (NaN kept), decimated }.
function decode(line) {
  if (!line) return null;
  return { steps: int64s(line.steps, line.count), values: float64s(line.values, line.count), decimated: line.decimated };
}

// The series of `keys` at `points` pixel columns (every point when left out), within the
// steps `first`..`last` when given: { key: { axis, decimated, global, participants } }.
export async function fetchSeries(base, keys, { points, first, last } = {}) {
  const url = new URL(base + "/metrics");
  url.searchParams.set("keys", keys.join(","));
  url.searchParams.set("format", "typed");
  if (points) url.searchParams.set("points", String(Math.max(1, Math.round(points))));
  if (first !== undefined) url.searchParams.set("min_step", String(first));
  if (last !== undefined) url.searchParams.set("max_step", String(last));
  const body = await getJSON(url);
  const out = {};
  for (const [key, s] of Object.entries(body.series)) {
    const participants = {};
    for (const [id, line] of Object.entries(s.participants)) participants[id] = decode(line);
    out[key] = { axis: s.axis, decimated: !!s.decimated, global: decode(s.global), participants };
  }
  return out;
}

function sameSteps(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
// uPlot's data for lines (each { steps, values } or null): the steps of them all, and a
// value per line at each (null where a line has no point there or logged NaN).
export function chartData(lines) {
  const held = lines.filter((l) => l && l.steps.length);
  let xs;
  if (held.length && held.every((l) => sameSteps(l.steps, held[0].steps))) xs = held[0].steps;
  else xs = [...new Set(held.flatMap((l) => l.steps))].sort((a, b) => a - b);
  const index = xs === (held[0] && held[0].steps) ? null : new Map(xs.map((x, i) => [x, i]));
  return [xs, ...lines.map((l) => {
    const ys = new Array(xs.length).fill(null);
    if (!l) return ys;
    for (let i = 0; i < l.steps.length; i++) {
      const v = l.values[i];
      ys[index ? index.get(l.steps[i]) : i] = Number.isNaN(v) ? null : v;
    }
    return ys;
  })];
}

// Zooming a chart (dragging across it) asks for the steps in view at the chart's width:
// every point once they fit, so the tooltip shows the values as logged. A double click
// goes back to the whole series. `chart` is { u, key, names, lines, overview, el }; the
// chart's element says what it shows in data-zoom ("" | "loading" | "exact" | "decimated").
export function zoomHooks(chart, base, lineOf) {
  let asked = 0;
  let busy = false;  // setData below moves the scale too: not a zoom of the user's
  const show = (data, zoom) => {
    busy = true;
    chart.u.setData(data, true);
    busy = false;
    chart.el.dataset.zoom = zoom;
  };
  return {
    setScale: (u, scaleKey) => {
      if (busy || scaleKey !== "x" || !chart.overview) return;
      const { min, max } = u.scales.x;
      const xs = chart.overview[0];
      if (min <= xs[0] && max >= xs[xs.length - 1]) return;  // the whole series in view
      const first = Math.ceil(min), last = Math.floor(max), ask = ++asked;
      if (first > last) return;
      chart.el.dataset.zoom = "loading";
      fetchSeries(base, [chart.key], { points: u.bbox.width / devicePixelRatio, first, last }).then((found) => {
        if (ask !== asked || !chart.u.root.isConnected) return;
        const s = found[chart.key];
        chart.decimated = s.decimated;
        show(chartData(chart.names.map((n) => lineOf(s, n))), s.decimated ? "decimated" : "exact");
      }, (err) => {
        if (ask === asked) chart.el.dataset.zoom = "error: " + (err.message || err);
      });
    },
    reset: () => {
      asked++;
      chart.decimated = chart.overviewDecimated;
      show(chart.overview, "");
    },
  };
}
