// berth dashboard charts: small SVG sparklines for the container table and
// line charts with axes for the host and container pages. berth's own code,
// no library; values may be null (a gap: unknown, or a counter reset).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

// Polyline point lists of one series, split at gaps.
function segments(xs, ys, x, y) {
  const out = [];
  let cur = [];
  for (let i = 0; i < ys.length; i++) {
    const v = ys[i];
    if (v === null || v === undefined || !isFinite(v)) {
      if (cur.length) out.push(cur);
      cur = [];
      continue;
    }
    cur.push(x(xs[i]).toFixed(1) + "," + y(v).toFixed(1));
  }
  if (cur.length) out.push(cur);
  return out;
}

function maxOf(arrays, floor) {
  let m = floor || 0;
  for (const a of arrays) for (const v of a) if (v !== null && v !== undefined && v > m) m = v;
  return m;
}

// A sparkline: `values` over the last `span` points, scaled to `max`
// (or its own maximum). Returns an <svg> with one <polyline> per
// unbroken run and, when given, a dashed line at `limit`.
function sparkline(values, opts) {
  const o = Object.assign({ width: 120, height: 28, color: "#3b82f6", cls: "" }, opts || {});
  const svg = svgEl("svg", {
    width: o.width, height: o.height, viewBox: `0 0 ${o.width} ${o.height}`,
    class: "spark " + o.cls,
  });
  const known = values.filter((v) => v !== null && v !== undefined).length;
  svg.dataset.points = String(known);
  const max = o.max || maxOf([values], o.floor || 1e-9);
  const n = Math.max(values.length, 2);
  const x = (i) => (i / (n - 1)) * (o.width - 2) + 1;
  const y = (v) => o.height - 2 - (Math.min(v, max) / max) * (o.height - 4);
  const idx = values.map((_, i) => i);
  if (o.limit && o.max) {
    svg.appendChild(svgEl("line", {
      x1: 0, x2: o.width, y1: y(o.limit), y2: y(o.limit), class: "limit",
    }));
  }
  for (const seg of segments(idx, values, x, y)) {
    if (seg.length === 1) seg.push(seg[0]);
    const area = svgEl("polygon", {
      points: `${seg[0].split(",")[0]},${o.height} ${seg.join(" ")} ${seg[seg.length - 1].split(",")[0]},${o.height}`,
      fill: o.color, "fill-opacity": "0.15", stroke: "none",
    });
    svg.appendChild(area);
    svg.appendChild(svgEl("polyline", {
      points: seg.join(" "), fill: "none", stroke: o.color, "stroke-width": "1.5",
    }));
  }
  return svg;
}

// Nice round tick values from 0 to about `max`.
function ticks(max, count) {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = 0; v <= max * 1.0001 + step / 2 && out.length < 12; v += step) out.push(v);
  return out;
}

function timeLabel(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 5 + (d.getSeconds() ? 3 : 0)).replace(/:00$/, "");
}

// A line chart into `host` (replacing what was there):
//   t: Unix ms; series: [{name, values, color}]; fmt: y-axis formatter;
//   max: fixed y maximum (else from the data); limit: {value, label}.
function lineChart(host, spec) {
  const width = Math.max(host.clientWidth || 480, 240);
  const height = spec.height || 170;
  const pad = { l: 58, r: 10, t: 10, b: 22 };
  const t = spec.t || [];
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart" });
  const arrays = spec.series.map((s) => s.values);
  let max = spec.max || maxOf(arrays, spec.floor || 0);
  if (spec.limit && spec.limit.value > 0 && spec.limit.show !== false) {
    max = Math.max(max, spec.limit.value);
  }
  if (!(max > 0)) max = 1;
  const t0 = t.length ? t[0] : Date.now() - 60000;
  const t1 = t.length > 1 ? t[t.length - 1] : t0 + 60000;
  const span = Math.max(t1 - t0, 1000);
  const x = (ms) => pad.l + ((ms - t0) / span) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (Math.min(v, max) / max) * (height - pad.t - pad.b);
  for (const v of ticks(max, 4)) {
    if (v > max * 1.0001) continue;
    svg.appendChild(svgEl("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    const label = svgEl("text", { x: pad.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = spec.fmt ? spec.fmt(v) : String(v);
    svg.appendChild(label);
  }
  const steps = 5;
  for (let i = 0; i <= steps; i++) {
    const ms = t0 + (span * i) / steps;
    const label = svgEl("text", {
      x: x(ms), y: height - 6, class: "axis",
      "text-anchor": i === 0 ? "start" : i === steps ? "end" : "middle",
    });
    label.textContent = timeLabel(ms);
    svg.appendChild(label);
  }
  if (spec.limit && spec.limit.value > 0 && spec.limit.value <= max) {
    const ly = y(spec.limit.value);
    svg.appendChild(svgEl("line", { x1: pad.l, x2: width - pad.r, y1: ly, y2: ly, class: "limit" }));
    const label = svgEl("text", { x: width - pad.r - 4, y: ly - 4, class: "axis limit-label", "text-anchor": "end" });
    label.textContent = spec.limit.label;
    svg.appendChild(label);
  }
  for (const s of spec.series) {
    for (const seg of segments(t, s.values, x, y)) {
      if (seg.length === 1) seg.push(seg[0]);
      svg.appendChild(svgEl("polyline", {
        points: seg.join(" "), fill: "none", stroke: s.color, "stroke-width": "1.6",
        class: "series", "data-series": s.name,
      }));
    }
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of spec.series) {
    const last = [...s.values].reverse().find((v) => v !== null && v !== undefined);
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${s.color}"></i>`;
    item.append(`${s.name}: ${last === undefined ? "–" : spec.fmt ? spec.fmt(last) : last}`);
    legend.appendChild(item);
  }
  host.replaceChildren(svg, legend);
  host.dataset.points = String(t.length);
}

// A horizontal usage bar: used of total, coloured by how full.
function usageBar(used, total) {
  const frac = total > 0 ? Math.min(used / total, 1) : 0;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill" + (frac > 0.9 ? " crit" : frac > 0.75 ? " warn" : "");
  fill.style.width = (frac * 100).toFixed(1) + "%";
  bar.appendChild(fill);
  return bar;
}

window.BerthCharts = { sparkline, lineChart, usageBar };
