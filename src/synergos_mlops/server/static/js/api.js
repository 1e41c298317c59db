// The API's and MLflow's addresses, ids in URLs, and getJSON (which times JSON parsing).
import { state } from "./state.js";

export const BASE = new URL(document.baseURI);
export const API = new URL("../api/synergos/v1/", BASE);
export const ROOT = new URL("../", BASE);
export const enc = encodeURIComponent;
export const path = (...ids) => ids.map(enc).join("/");
export const runHref = (c, p, e, r) => "runs/" + path(c, p, e, r);
export async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: "application/json" } });
  const text = await res.text();
  const started = performance.now();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
  state.timings.parse += performance.now() - started;
  if (!res.ok) throw new Error((body && body.error && body.error.message) || res.status + " " + res.statusText);
  return body;
}
