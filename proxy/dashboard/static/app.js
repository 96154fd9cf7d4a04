// slugway proxy dashboard: polls api/overview (the slugs shown) and api/slugs/<slug>
// (the instances of each slug opened) once a second and updates the table in place.
// Everything user-supplied is set as textContent, never as HTML.
"use strict";

const POLL_MS = 1000;
const LIMIT = 200; // rows on the page; the search box finds the rest
const $ = (id) => document.getElementById(id);
const rows = new Map(); // slug -> {tr, detail, cells}
const open = new Set(); // slugs whose instances are shown
let query = "", sort = "name", lastOK = 0;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtRate(r) {
  if (!r) return "0";
  return r >= 100 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2);
}

function fmtMs(ms) {
  if (!ms) return "–";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 10) return ms.toFixed(0) + " ms";
  if (ms >= 1) return ms.toFixed(1) + " ms";
  return (ms * 1000).toFixed(0) + " µs";
}

function fmtAgo(seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 90) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
  if (seconds < 5400) return (seconds / 60).toFixed(0) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function since(iso, now) {
  return iso ? fmtAgo((now - Date.parse(iso)) / 1000) + " ago" : "never";
}

function pill(td, text) {
  td.textContent = "";
  td.appendChild(el("span", "pill " + (text || "Unknown"), text || "Unknown"));
}

const SVG = "http://www.w3.org/2000/svg";
function spark(svg, values) {
  const w = 120, h = 22, max = Math.max(1, ...values);
  let line = svg.firstChild;
  if (!line) {
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    line = document.createElementNS(SVG, "polyline");
    svg.appendChild(line);
  }
  const step = w / Math.max(1, values.length - 1);
  line.setAttribute("points", values.map((v, i) =>
    `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`).join(" "));
}

function makeRow(slug) {
  const tr = el("tr", "slug");
  tr.dataset.slug = slug;
  const names = ["toggle", "name", "display", "owner", "ready", "num routable", "num rate",
    "num rate4xx", "num rate5xx", "num p50", "num p99", "sparkcell"];
  const cells = {};
  for (const n of names) {
    const td = el("td", n);
    tr.appendChild(td);
    cells[n.split(" ").pop()] = td;
  }
  cells.toggle.textContent = "▸";
  cells.name.textContent = slug;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  cells.sparkcell.appendChild(svg);
  cells.svg = svg;
  const detail = el("tr", "detail");
  detail.dataset.detailOf = slug;
  const dtd = el("td");
  dtd.colSpan = names.length;
  detail.appendChild(dtd);
  detail.hidden = true;
  tr.addEventListener("click", () => toggle(slug));
  const r = { tr, detail, cells, dtd };
  rows.set(slug, r);
  return r;
}

function fillRow(r, s) {
  const c = r.cells;
  c.display.textContent = s.displayName;
  c.display.title = s.displayName;
  c.owner.textContent = s.owner;
  c.owner.title = s.owner;
  pill(c.ready, s.deleting ? "Deleting" : s.ready);
  if (s.readyReason) c.ready.title = s.readyReason;
  c.routable.textContent = `${s.routable}/${s.total}` + (s.degraded ? " (degraded)" : "");
  c.routable.classList.toggle("err", s.routable === 0);
  const st = s.stats;
  c.rate.textContent = fmtRate(st.rate);
  c.rate4xx.textContent = fmtRate(st.rate4xx);
  c.rate4xx.classList.toggle("err", st.status4xx > 0);
  c.rate5xx.textContent = fmtRate(st.rate5xx);
  c.rate5xx.classList.toggle("err", st.status5xx > 0);
  c.rate.dataset.requests = st.requests;
  c.p50.textContent = fmtMs(st.p50ms);
  c.p99.textContent = fmtMs(st.p99ms);
  if (st.spark) spark(c.svg, st.spark);
}

function toggle(slug) {
  const r = rows.get(slug);
  if (open.has(slug)) {
    open.delete(slug);
    r.detail.hidden = true;
    r.cells.toggle.textContent = "▸";
    return;
  }
  open.add(slug);
  r.detail.hidden = false;
  r.cells.toggle.textContent = "▾";
  if (!r.dtd.firstChild) r.dtd.appendChild(el("span", "note", "loading instances…"));
  pollSlug(slug);
}

const INST_COLS = ["instance", "URL", "status", "last heartbeat", "routed", "ejected until", "in flight"];

function fillInstances(r, d, now) {
  let table = r.dtd.querySelector("table");
  if (!table) {
    r.dtd.textContent = "";
    table = el("table", "instances");
    const head = el("tr");
    for (const h of INST_COLS) head.appendChild(el("th", "", h));
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    table.appendChild(el("tbody"));
    r.dtd.appendChild(table);
  }
  const body = table.tBodies[0];
  body.textContent = "";
  if (d.instances.length === 0) {
    const tr = el("tr");
    const td = el("td", "note", "no Instances name this slug");
    td.colSpan = INST_COLS.length;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  for (const i of d.instances) {
    const tr = el("tr");
    tr.dataset.instance = i.namespace + "/" + i.name;
    tr.appendChild(el("td", "iname", i.namespace + "/" + i.name));
    tr.appendChild(el("td", "url", i.url));
    const st = el("td", "status");
    pill(st, i.status);
    if (i.reason) st.title = i.reason;
    tr.appendChild(st);
    tr.appendChild(el("td", "heartbeat", since(i.lastHeartbeat, now)));
    tr.appendChild(el("td", "routed", i.routed ? "yes" : "no"));
    const ej = el("td", "until");
    const until = i.ejectedUntil ? Date.parse(i.ejectedUntil) : 0;
    if (until > now) {
      ej.appendChild(el("span", "pill ejected", new Date(until).toLocaleTimeString() +
        ` (${fmtAgo((until - now) / 1000)})`));
    } else ej.textContent = "–";
    tr.appendChild(ej);
    tr.appendChild(el("td", "num inflight", String(i.inFlight)));
    body.appendChild(tr);
  }
}

async function getJSON(path) {
  const resp = await fetch(path, { cache: "no-store" });
  if (!resp.ok && resp.status !== 404) throw new Error(`${path}: ${resp.status}`);
  return { status: resp.status, body: await resp.json() };
}

async function pollSlug(slug) {
  const r = rows.get(slug);
  try {
    const { status, body } = await getJSON("api/slugs/" + encodeURIComponent(slug));
    if (!open.has(slug)) return;
    if (status === 404) {
      r.dtd.textContent = "";
      r.dtd.appendChild(el("span", "note", "this slug is no longer in the route table"));
      return;
    }
    fillInstances(r, body, Date.now());
  } catch (e) {
    connLost(e);
  }
}

function connLost(e) {
  const c = $("conn");
  c.className = "conn lost";
  c.textContent = "no answer from the proxy" + (lastOK ? ` since ${new Date(lastOK).toLocaleTimeString()}` : "");
  c.title = String(e);
}

async function pollOverview() {
  const params = new URLSearchParams({ q: query, sort, limit: LIMIT });
  const { body: o } = await getJSON("api/overview?" + params);
  const now = Date.parse(o.now);
  $("t-slugs").textContent = o.table.slugs;
  $("t-age").textContent = o.table.swappedAt.startsWith("0001") ? "no table yet" : fmtAgo(o.table.ageSeconds);
  $("t-age").title = o.table.swappedAt;
  $("t-prop").textContent = o.table.lastPropagationSeconds ? fmtMs(o.table.lastPropagationSeconds * 1000) : "–";
  $("t-builds").textContent = o.table.builds;
  $("t-unknown").textContent = fmtRate(o.unknown.rate);
  $("count").textContent = o.matched > o.rows.length
    ? `showing ${o.rows.length} of ${o.matched} matching (${o.slugs} slugs): search to narrow`
    : `${o.matched} of ${o.slugs} slugs`;
  const body = $("rows");
  const seen = new Set();
  let prev = null;
  for (const s of o.rows) {
    seen.add(s.slug);
    const r = rows.get(s.slug) || makeRow(s.slug);
    fillRow(r, s);
    // Keep the order of the answer, moving nodes only when they are out of place.
    const want = prev ? prev.detail.nextSibling : body.firstChild;
    if (want !== r.tr) {
      body.insertBefore(r.tr, want);
      body.insertBefore(r.detail, r.tr.nextSibling);
    }
    prev = r;
  }
  for (const [slug, r] of rows) {
    if (!seen.has(slug)) {
      r.tr.remove();
      r.detail.remove();
      rows.delete(slug);
      open.delete(slug);
    }
  }
  lastOK = Date.now();
  const c = $("conn");
  c.className = "conn";
  c.textContent = "live · updated " + new Date(now).toLocaleTimeString();
  await Promise.all([...open].map(pollSlug));
}

async function loop() {
  try {
    await pollOverview();
  } catch (e) {
    connLost(e);
  }
  setTimeout(loop, POLL_MS);
}

let debounce;
$("q").addEventListener("input", (e) => {
  clearTimeout(debounce);
  debounce = setTimeout(() => { query = e.target.value; pollOverview().catch(connLost); }, 150);
});
$("sort").addEventListener("change", (e) => { sort = e.target.value; pollOverview().catch(connLost); });
loop();
