// Building elements: h(tag, attrs, ...children), in-page links, code and external links.
import { noun } from "./format.js";

export function h(tag, attrs, ...children) {
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
export const link = (href, text, attrs) => h("a", Object.assign({ href, "data-nav": true }, attrs || {}), text);
export const code = (text) => h("code", {}, text);
// A figure card of a stats row: the number, and its noun in the singular or plural.
export const stat = (n, one, many, attrs) => h("div", Object.assign({ class: "stat" }, attrs || {}), h("b", {}, n), noun(n, one, many));

export const external = (href, text, attrs) => h("a", Object.assign({ href, target: "_blank", rel: "noopener" }, attrs || {}), text);
