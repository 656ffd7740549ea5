// Small helpers shared by the tabs: JSON requests, DOM building, toasts, the loss chart.

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(child));
  }
  return node;
}

export class ApiError extends Error {}

export async function api(path, options = {}) {
  const init = { ...options };
  if (options.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json", ...(init.headers || {}) };
    init.body = JSON.stringify(options.json);
    delete init.json;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!response.ok) {
    const message = (body && body.error && body.error.message) || `${response.status} ${response.statusText}`;
    throw new ApiError(message);
  }
  return body;
}

let toastTimer = null;
export function toast(message, bad = false) {
  const box = $("#toast");
  box.textContent = message;
  box.classList.toggle("bad", bad);
  box.classList.remove("hidden");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.add("hidden"), bad ? 9000 : 3500);
}

export function fmt(value, digits = 4) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

export function duration(seconds) {
  if (!isFinite(seconds)) return "";
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function niceTicks(min, max, count) {
  if (min === max) { min -= 1; max += 1; }
  const raw = (max - min) / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
  // The last tick must reach the maximum: the chart's y range ends there, and points above it were drawn
  // outside the chart (a loss curve's first, highest points).
  while (ticks[ticks.length - 1] < max - step * 1e-9) ticks.push(+(ticks[ticks.length - 1] + step).toFixed(10));
  return ticks;
}

// Axis labels with as many decimals as the tick step has (0.005 -> 3), the same for every tick: a
// fixed 3 significant digits gave 9.91, 9.91, 9.91 for ticks 0.005 apart.
export function tickLabels(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  let decimals = 0;
  for (; decimals < 10; decimals++) {  // niceTicks rounds ticks to 10 decimals
    const scaled = step * 10 ** decimals;
    if (Math.round(scaled) >= 1 && Math.abs(scaled - Math.round(scaled)) < 1e-6 * scaled) break;
  }
  return ticks.map((v) => v.toFixed(decimals));
}

// Train loss (and eval loss) against step, as SVG: one circle.pt per logged point. `keys`: another
// metric and its eval_ twin (a preference run's rewards/margins).
export function drawLossChart(target, metrics, placeholder, keys = ["loss", "eval_loss"]) {
  const box = target.viewBox.baseVal;
  const W = box.width, H = box.height, pad = { l: 48, r: 14, t: 12, b: 28 };
  target.replaceChildren();
  const train = metrics.filter((m) => typeof m[keys[0]] === "number").map((m) => [m.step, m[keys[0]]]);
  const evals = metrics.filter((m) => typeof m[keys[1]] === "number").map((m) => [m.step, m[keys[1]]]);
  const all = train.concat(evals);
  if (!all.length) {
    target.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "placeholder" }, placeholder || ""));
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xMin = Math.min(...xs, 0), xMax = Math.max(...xs, 1);
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 4);
  const yMin = yTicks[0], yMax = yTicks[yTicks.length - 1];
  const X = (v) => pad.l + ((v - xMin) / (xMax - xMin || 1)) * (W - pad.l - pad.r);
  const Y = (v) => H - pad.b - ((v - yMin) / (yMax - yMin || 1)) * (H - pad.t - pad.b);
  const yLabels = tickLabels(yTicks);
  yTicks.forEach((v, i) => {
    target.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: Y(v), y2: Y(v), class: "grid-line" }));
    target.append(svg("text", { x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end", class: "y-label" }, yLabels[i]));
  });
  for (const v of niceTicks(xMin, xMax, 6).filter((v) => v >= xMin && v <= xMax && Number.isInteger(v))) {
    target.append(svg("text", { x: X(v), y: H - 8, "text-anchor": "middle" }, v));
  }
  target.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b, class: "axis" }));
  target.append(svg("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: H - pad.b, class: "axis" }));
  for (const [points, cls] of [[train, ""], [evals, "eval"]]) {
    if (!points.length) continue;
    target.append(svg("polyline", { class: `line ${cls}`, points: points.map(([x, y]) => `${X(x)},${Y(y)}`).join(" ") }));
    const radius = points.length > 60 ? 1.6 : 3;
    for (const [x, y] of points) {
      const dot = svg("circle", { cx: X(x), cy: Y(y), r: radius, class: `pt ${cls}` });
      dot.append(svg("title", {}, `step ${x}: ${y.toFixed(4)}`));
      target.append(dot);
    }
  }
}
