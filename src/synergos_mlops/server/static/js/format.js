// How every number, size, time and duration is written on every page: the one place that
// decides digits and units.
//   integers bare (3, 1500);
//   other numbers with 4 significant digits, trailing zeros dropped (2.8, 0.01184, 79170);
//   very small or large ones as a mantissa and a power of ten that never wraps (1.805×10⁻⁴);
//   a unit after a no-break space (2.8 s, 512 MB).
const SIGNIFICANT = 4;
const NBSP = "\u00a0";
const SUPERSCRIPT = { "-": "⁻", "+": "", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

const trim = (text) => (text.includes(".") ? text.replace(/\.?0+$/, "") : text);
function scientific(v, digits) {
  const [mantissa, exponent] = v.toExponential(digits - 1).split("e");
  return trim(mantissa) + "×10" + [...exponent].map((c) => SUPERSCRIPT[c]).join("");
}

export const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

// A number as the page shows it; anything else as text; "—" for nothing.
export function fmtNum(v, unit) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  let text;
  const a = Math.abs(v);
  if (!Number.isFinite(v)) text = String(v);
  else if (Number.isInteger(v) && a < 1e9) text = String(v);
  else if (a !== 0 && (a < 1e-3 || a >= 1e9)) text = scientific(v, SIGNIFICANT);
  else {
    const decimals = Math.max(0, SIGNIFICANT - 1 - Math.floor(Math.log10(a)));
    text = trim(v.toFixed(decimals));
    if (text === "-0") text = "0";
  }
  return unit ? text + NBSP + unit : text;
}

// A hyperparameter: MLflow keeps them as text; a number written with many digits is shown
// like any other number (the text as logged is the element's title, see paramTitle).
export function fmtParam(v) {
  if (typeof v === "string" && /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(v.trim())) {
    const n = Number(v);
    if (Number.isFinite(n)) return fmtNum(n);
  }
  return fmtNum(v);
}
export const paramTitle = (v) => (fmtParam(v) === String(v) ? null : String(v));

// Axis ticks: as many decimals as the step between ticks needs, no more, no thousands commas.
export function fmtTicks(splits) {
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 0;
  const big = Math.max(...splits.map((v) => Math.abs(v)));
  if (big !== 0 && (big < 1e-3 || big >= 1e9)) return splits.map((v) => (v === 0 ? "0" : scientific(v, SIGNIFICANT)));
  let decimals = 0;  // as many as the step has: 2.5 needs one, 0.25 two
  while (step > 0 && decimals < 12 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6 * step * 10 ** decimals) decimals++;
  return splits.map((v) => trim(v.toFixed(decimals)).replace(/^-0$/, "0"));
}

// "1 participant", "3 participants"; noun() alone for a figure shown apart from its word.
export const noun = (n, one, many) => (n === 1 ? one : many || one + "s");
export const plural = (n, one, many) => n + " " + noun(n, one, many);

export function fmtSize(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
export function duration(a, b) {
  if (!a || !b) return null;
  const s = Math.round((new Date(b) - new Date(a)) / 1000);
  return s < 60 ? s + " s" : s < 3600 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
}
