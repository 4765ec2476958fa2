// berth dashboard: polls the daemon's /api/ endpoints (hosts, this host's
// overview, the merged container table with series since the last poll,
// one container's history and processes) and follows the event feed over
// server-sent events. Plain DOM; charts come from charts.js.
"use strict";

const C = window.BerthCharts;
const SPARK_POINTS = 60;
const HOST_POINTS = 1000;
const COLORS = {
  cpu: "#2563eb", mem: "#16a34a", ws: "#86efac", rx: "#9333ea", tx: "#f59e0b",
  read: "#0891b2", write: "#dc2626", fs: "#ca8a04", pids: "#475569",
  l1: "#2563eb", l5: "#9333ea", l15: "#94a3b8",
};

const state = {
  hosts: [],
  rows: new Map(), // "host/id" -> {row, s: series columns}
  host: null, // this host's series
  page: null, // {host, id, s, lastT, details}
  events: null, // EventSource of the home feed
  pageEvents: null,
};

// ---- formatting ----
function bytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
}
const rate = (n) => (n === null || n === undefined ? "–" : bytes(n) + "/s");
const pct = (f) => (f === null || f === undefined ? "–" : (f * 100).toFixed(f < 0.1 ? 1 : 0) + "%");
const cores = (f) => (f === null || f === undefined ? "–" : (f * 100).toFixed(f < 0.1 ? 1 : 0) + "%");
const last = (a) => { for (let i = a.length - 1; i >= 0; i--) if (a[i] !== null && a[i] !== undefined) return a[i]; return null; };
const sum2 = (a, b) => a.map((v, i) => (v === null || b[i] === null ? null : v + b[i]));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

// Appends the columns of `add` to `buf` (points newer than buf's last
// only) and keeps the newest `max`.
function appendSeries(buf, add, max) {
  const lastT = buf.t.length ? buf.t[buf.t.length - 1] : -Infinity;
  for (let i = 0; i < add.t.length; i++) {
    if (add.t[i] <= lastT) continue;
    for (const k of Object.keys(add)) {
      if (!buf[k]) buf[k] = [];
      buf[k].push(add[k][i]);
    }
  }
  const extra = buf.t.length - max;
  if (extra > 0) for (const k of Object.keys(buf)) buf[k].splice(0, extra);
  return buf;
}
const emptySeries = () => ({ t: [] });

// ---- hosts ----
async function pollHosts() {
  try {
    state.hosts = await getJSON("/api/hosts");
  } catch (e) {
    return;
  }
  const box = document.getElementById("hosts");
  box.replaceChildren(...state.hosts.map((h) => {
    const i = h.info || {};
    const up = h.up;
    return el("div", { class: "host " + (up ? "up" : "down"), "data-host": h.id },
      el("div", { class: "host-head" },
        el("span", { class: "dot" }),
        el("strong", {}, h.id === "local" ? i.name || h.name : h.name),
        el("span", { class: "badge" }, h.kind || "?"),
        el("span", { class: "muted small" }, h.id === "local" ? "this daemon"
          : (i.name ? "host " + i.name + " · " : "") + h.address)),
      up ? el("div", { class: "host-body" },
        el("div", {}, `${i.platform || ""} ${i.server_version || ""} · API ${i.api_version || ""}`),
        el("div", {}, `${i.os || ""} · kernel ${i.kernel || ""}`),
        el("div", {}, `${i.ncpu || 0} CPUs · ${bytes(i.mem_total)} · ${i.driver || ""}`),
        el("div", {}, `${i.running || 0} running / ${i.containers || 0} containers · ${i.images || 0} images`))
        : el("div", { class: "host-body err" }, "down: " + (h.error || "not reached yet"),
          h.last_ok ? el("div", { class: "muted" }, "last seen " + new Date(h.last_ok).toLocaleTimeString()) : null),
    );
  }));
  const sel = document.getElementById("ev-host");
  const cur = sel.value || "local";
  sel.replaceChildren(...state.hosts.map((h) =>
    el("option", { value: h.id, selected: h.id === cur },
      h.id === "local" ? (h.info && h.info.name) || h.name : h.name)));
}

// ---- this host ----
async function pollOverview() {
  const since = state.host && state.host.t.length ? state.host.t[state.host.t.length - 1] : 0;
  let ov;
  try {
    ov = await getJSON("/api/overview" + (since ? "?since=" + since : ""));
  } catch (e) {
    return;
  }
  state.host = appendSeries(state.host || emptySeries(), ov.series, HOST_POINTS);
  const s = state.host;
  document.getElementById("ov-name").textContent = ov.info.name;
  document.getElementById("ov-sampler").textContent =
    `sampler: every ${ov.sampler.interval_ms} ms, last tick ${ov.sampler.last_tick_ms.toFixed(1)} ms for ${ov.sampler.containers} containers`;
  if (document.getElementById("home").hidden) return;
  C.lineChart(document.getElementById("ov-cpu"), {
    t: s.t, max: 1, fmt: pct, series: [{ name: "busy", values: s.cpu, color: COLORS.cpu }],
  });
  const memTotal = last(s.mem_total) || 0;
  C.lineChart(document.getElementById("ov-mem"), {
    t: s.t, fmt: bytes, max: memTotal, limit: { value: memTotal, label: "total " + bytes(memTotal) },
    series: [{ name: "used", values: s.mem_used, color: COLORS.mem }],
  });
  C.lineChart(document.getElementById("ov-load"), {
    t: s.t, fmt: (v) => v.toFixed(1), floor: 1,
    series: [
      { name: "1m", values: s.load1, color: COLORS.l1 },
      { name: "5m", values: s.load5, color: COLORS.l5 },
      { name: "15m", values: s.load15, color: COLORS.l15 },
    ],
  });
  const pools = document.getElementById("ov-pools");
  const rows = [];
  if (ov.disk) rows.push(["data root filesystem", ov.disk.used, ov.disk.total]);
  for (const p of ov.pools) rows.push([`${ov.driver}: ${p.pool}`, p.used, p.total]);
  pools.replaceChildren(...rows.map(([name, used, total]) =>
    el("div", { class: "pool" }, el("div", { class: "pool-name" }, name,
      el("span", { class: "muted" }, ` ${bytes(used)} of ${bytes(total)} (${pct(total ? used / total : 0)})`)),
    C.usageBar(used, total))));
  const i = ov.info;
  const kv = [
    ["Version", `${i.server_version} (API ${i.api_version})`],
    ["Operating system", `${i.os} · ${i.arch} · kernel ${i.kernel}`],
    ["Storage driver", i.driver],
    ...i.driver_status.map(([k, v]) => ["  " + k, v]),
    ["Cgroup version", i.cgroup_version],
    ["Root dir", i.root_dir],
    ["Debug", i.debug ? "on" : "off"],
    ["Containers", `${i.running} running, ${i.paused} paused, ${i.stopped} stopped`],
    ["Images", String(i.images)],
  ];
  for (const w of i.warnings || []) kv.push(["Warning", w]);
  document.getElementById("ov-daemon").replaceChildren(el("table", { class: "kv" },
    ...kv.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
}

// ---- containers ----
async function pollContainers() {
  // Ask from the oldest newest-point we hold (hosts' clocks may differ),
  // never more than two minutes back.
  const now = Date.now();
  let since = now - SPARK_POINTS * 1000;
  const lasts = [...state.rows.values()].map((r) => r.s.t[r.s.t.length - 1]).filter((t) => t);
  if (lasts.length) since = Math.max(Math.min(...lasts), now - 120000);
  let data;
  try {
    data = await getJSON("/api/containers?since=" + Math.floor(since));
  } catch (e) {
    return;
  }
  const seen = new Set();
  for (const row of data.containers) {
    const key = row.host + "/" + row.id;
    seen.add(key);
    const cur = state.rows.get(key) || { s: emptySeries() };
    cur.row = row;
    appendSeries(cur.s, row.series, SPARK_POINTS);
    state.rows.set(key, cur);
  }
  for (const k of [...state.rows.keys()]) if (!seen.has(k)) state.rows.delete(k);
  if (!document.getElementById("home").hidden) renderTable();
}

function stateBadge(st) {
  return el("span", { class: "state " + st }, st);
}

function renderTable() {
  const all = document.getElementById("ct-all").checked;
  const rows = [...state.rows.values()]
    .filter((r) => all || r.row.state === "running" || r.row.state === "paused")
    .sort((a, b) => (a.row.host_name + a.row.name).localeCompare(b.row.host_name + b.row.name));
  document.getElementById("ct-count").textContent = `${rows.length} shown of ${state.rows.size}`;
  const body = document.querySelector("#containers tbody");
  body.replaceChildren(...rows.map(({ row, s }) => {
    // An unlimited container reports the machine's memory as its limit:
    // then the sparkline scales to the container's own use.
    const memLimit = last(s.mem_limit || []) || 0;
    const host = state.hosts.find((h) => h.id === row.host);
    const hostMem = (host && host.info && host.info.mem_total) || 0;
    const limited = memLimit > 0 && (!hostMem || memLimit < hostMem);
    const net = sum2(s.rx || [], s.tx || []);
    const blk = sum2(s.blk_read || [], s.blk_write || []);
    const fsNow = last(s.fs || []);
    const link = `#/c/${encodeURIComponent(row.host)}/${encodeURIComponent(row.id)}`;
    return el("tr", { "data-host": row.host, "data-id": row.id, "data-name": row.name, class: row.stale ? "stale" : "" },
      el("td", {}, row.host_name, row.stale ? el("span", { class: "badge down" }, "down") : null),
      el("td", {}, el("a", { href: link }, row.name), el("div", { class: "muted small" }, row.id.slice(0, 12))),
      el("td", { class: "small" }, row.image),
      el("td", {}, stateBadge(row.state), el("div", { class: "muted small" }, row.status)),
      el("td", { class: "cell-cpu" }, C.sparkline(s.cpu || [], { color: COLORS.cpu, floor: 0.01, cls: "spark-cpu" }),
        el("div", {}, cores(last(s.cpu || [])))),
      el("td", {}, C.sparkline(s.mem || [], {
        color: COLORS.mem, max: limited ? memLimit : undefined, floor: 1024 * 1024, cls: "spark-mem",
      }),
        el("div", {}, `${bytes(last(s.mem || []))} / ${limited ? bytes(memLimit) : "no limit"}`)),
      el("td", {}, C.sparkline(net, { color: COLORS.rx, floor: 1024, cls: "spark-net" }),
        el("div", {}, `${rate(last(s.rx || []))} ↓ ${rate(last(s.tx || []))} ↑`)),
      el("td", {}, C.sparkline(blk, { color: COLORS.read, floor: 1024, cls: "spark-blk" }),
        el("div", {}, `${rate(last(s.blk_read || []))} r ${rate(last(s.blk_write || []))} w`)),
      el("td", {}, C.sparkline(s.fs || [], { color: COLORS.fs, max: row.fs_limit || undefined, floor: 4096, cls: "spark-fs" }),
        el("div", {}, row.fs_limit ? `${bytes(fsNow)} / ${bytes(row.fs_limit)}` : bytes(fsNow)),
        row.fs_limit ? C.usageBar(fsNow || 0, row.fs_limit) : null),
    );
  }));
}

// ---- events ----
function parseFilters(text) {
  const f = {};
  for (const tok of text.trim().split(/\s+/).filter(Boolean)) {
    const at = tok.indexOf("=");
    if (at <= 0) continue;
    const k = tok.slice(0, at);
    (f[k] = f[k] || {})[tok.slice(at + 1)] = true;
  }
  return f;
}

function eventRow(ev) {
  const actor = ev.Actor || {};
  const attrs = actor.Attributes || {};
  const name = attrs.name || "";
  const t = ev.timeNano ? new Date(ev.timeNano / 1e6) : new Date((ev.time || 0) * 1000);
  const shown = Object.entries(attrs).filter(([k]) => k !== "name")
    .map(([k, v]) => `${k}=${v}`).join(", ");
  return el("tr", { "data-action": ev.Action || "", "data-name": name, "data-type": ev.Type || "" },
    el("td", { class: "small" }, t.toLocaleTimeString()),
    el("td", {}, ev.Type || ""),
    el("td", {}, el("span", { class: "action " + (ev.Action || "").split(":")[0] }, ev.Action || "")),
    el("td", {}, name || (actor.ID || "").slice(0, 12)),
    el("td", { class: "small muted" }, shown));
}

function follow(body, host, filters, old) {
  if (old) old.close();
  body.replaceChildren();
  const since = Math.floor(Date.now() / 1000) - 600;
  const q = new URLSearchParams({ host, filters: JSON.stringify(filters), since: String(since) });
  const src = new EventSource("/api/events?" + q);
  src.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    body.prepend(eventRow(ev));
    while (body.children.length > 300) body.lastChild.remove();
  };
  src.addEventListener("error", (m) => {
    if (m.data) body.prepend(el("tr", { class: "err" }, el("td", { colSpan: 5 }, m.data)));
  });
  return src;
}

function followHome() {
  const host = document.getElementById("ev-host").value || "local";
  const filters = parseFilters(document.getElementById("ev-filter").value);
  state.events = follow(document.getElementById("events"), host, filters, state.events);
}

// ---- one container ----
async function pollPage() {
  const p = state.page;
  if (!p) return;
  const q = p.lastT ? "?since=" + p.lastT : "";
  let data;
  try {
    data = await getJSON(`/api/containers/${encodeURIComponent(p.host)}/${encodeURIComponent(p.id)}${q}`);
  } catch (e) {
    document.getElementById("c-details").textContent = "container not found (removed?)";
    return;
  }
  if (state.page !== p) return;
  const row = data.row;
  appendSeries(p.s, row.series, HOST_POINTS);
  if (p.s.t.length) p.lastT = p.s.t[p.s.t.length - 1];
  document.getElementById("c-name").textContent = row.name;
  document.getElementById("c-host").textContent = "on " + row.host_name;
  const d = data.details || {};
  p.details = d;
  p.row = row;
  const facts = [
    ["ID", row.id], ["Image", row.image], ["State", row.state + " · " + row.status],
    d.command ? ["Command", d.command] : null,
    d.memory_limit ? ["Memory limit", bytes(d.memory_limit)] : null,
    d.nano_cpus ? ["CPUs", String(d.nano_cpus / 1e9)] : null,
    row.fs_limit ? ["Storage limit", `${bytes(row.fs_limit)} (${d.driver || ""})`] : null,
    d.labels && Object.keys(d.labels).length ? ["Labels", Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(", ")] : null,
  ].filter(Boolean);
  document.getElementById("c-details").replaceChildren(el("table", { class: "kv" },
    ...facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  drawPage();
}

function drawPage() {
  const p = state.page;
  if (!p) return;
  const range = Number(document.getElementById("c-range").value);
  const s = p.s;
  let from = 0;
  if (range > 0 && s.t.length) {
    const cut = s.t[s.t.length - 1] - range;
    while (from < s.t.length && s.t[from] < cut) from++;
  }
  const v = (k) => (s[k] || []).slice(from);
  const t = s.t.slice(from);
  C.lineChart(document.getElementById("c-cpu"), {
    t, fmt: cores, floor: 0.01, series: [{ name: "cpu", values: v("cpu"), color: COLORS.cpu }],
  });
  // The limit line only for a real --memory limit (the sampler reports
  // the machine's memory otherwise).
  const specLimit = (p.details && p.details.memory_limit) || 0;
  C.lineChart(document.getElementById("c-mem"), {
    t, fmt: bytes, floor: 1024 * 1024,
    limit: specLimit > 0 ? { value: specLimit, label: "limit " + bytes(specLimit) } : null,
    series: [
      { name: "usage", values: v("mem"), color: COLORS.mem },
      { name: "working set", values: v("working_set"), color: COLORS.ws },
    ],
  });
  C.lineChart(document.getElementById("c-net"), {
    t, fmt: rate, floor: 1024, series: [
      { name: "rx", values: v("rx"), color: COLORS.rx },
      { name: "tx", values: v("tx"), color: COLORS.tx },
    ],
  });
  C.lineChart(document.getElementById("c-blk"), {
    t, fmt: rate, floor: 1024, series: [
      { name: "read", values: v("blk_read"), color: COLORS.read },
      { name: "write", values: v("blk_write"), color: COLORS.write },
    ],
  });
  const fsLimit = p.row && p.row.fs_limit;
  C.lineChart(document.getElementById("c-fs"), {
    t, fmt: bytes, floor: 1024 * 1024, limit: fsLimit ? { value: fsLimit, label: "limit " + bytes(fsLimit) } : null,
    series: [{ name: "used", values: v("fs"), color: COLORS.fs }],
  });
  C.lineChart(document.getElementById("c-pids"), {
    t, fmt: (x) => String(Math.round(x)), floor: 4, series: [{ name: "pids", values: v("pids"), color: COLORS.pids }],
  });
}

async function pollProcesses() {
  const p = state.page;
  if (!p) return;
  let table;
  try {
    table = await getJSON(`/api/containers/${encodeURIComponent(p.host)}/${encodeURIComponent(p.id)}/processes`);
  } catch (e) {
    return;
  }
  const t = document.getElementById("c-procs");
  t.tHead.replaceChildren(el("tr", {}, ...table.titles.map((x) => el("th", {}, x))));
  t.tBodies[0].replaceChildren(...table.processes.map((r) =>
    el("tr", {}, ...r.map((c, i) => el("td", { class: i === r.length - 1 ? "cmd" : "" }, c)))));
}

// ---- routing ----
function route() {
  const m = location.hash.match(/^#\/c\/([^/]+)\/(.+)$/);
  const home = document.getElementById("home");
  const page = document.getElementById("page");
  if (m) {
    const host = decodeURIComponent(m[1]);
    const id = decodeURIComponent(m[2]);
    home.hidden = true;
    page.hidden = false;
    const key = host + "/" + id;
    const known = state.rows.get(key);
    state.page = { host, id, s: emptySeries(), lastT: 0, row: known && known.row };
    document.getElementById("c-procs").tBodies[0].replaceChildren();
    state.pageEvents = follow(document.getElementById("c-events"), host,
      { container: { [id]: true } }, state.pageEvents);
    pollPage().then(() => {
      const r = state.rows.get(key);
      if (r && state.page) state.page.row = r.row;
    });
    pollProcesses();
  } else {
    state.page = null;
    if (state.pageEvents) { state.pageEvents.close(); state.pageEvents = null; }
    page.hidden = true;
    home.hidden = false;
    renderTable();
  }
}

function every(ms, f) {
  const run = async () => {
    try { await f(); } catch (e) { console.error(e); }
    setTimeout(run, ms);
  };
  run();
}

window.addEventListener("hashchange", route);
document.getElementById("ct-all").addEventListener("change", renderTable);
document.getElementById("c-range").addEventListener("change", drawPage);
document.getElementById("ev-form").addEventListener("submit", (e) => {
  e.preventDefault();
  followHome();
});
window.addEventListener("resize", () => { if (state.page) drawPage(); });

every(3000, pollHosts);
every(1000, pollOverview);
every(1000, pollContainers);
every(1000, pollPage);
every(3000, pollProcesses);
every(1000, async () => {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString();
});
followHome();
route();
