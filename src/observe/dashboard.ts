import { createHash } from 'node:crypto';

/**
 * The live dashboard: one HTML page, style and script inline, nothing fetched from elsewhere.
 * It polls the admin API once a second (/status, then /traffic, /failures, and /clusters or
 * /exits and /users as /status says the reverse gateway or the forward proxy runs). With a bearer token, open it as `/#token=TOKEN`: the fragment never leaves the
 * browser, and the script sends it as `Authorization: Bearer TOKEN`.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatewise — live</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --mute:#6b7385; --line:#e3e6eb; --ok:#2e9d5b; --bad:#d64545; --warn:#d99a1e; --info:#3b6fd6; }
  * { box-sizing: border-box; }
  body { margin:0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:var(--ink); }
  header { display:flex; gap:16px; align-items:baseline; padding:10px 16px; background:#1d2330; color:#fff; flex-wrap:wrap; }
  header h1 { font-size:16px; margin:0; }
  header .fig { font-variant-numeric: tabular-nums; }
  header .fig b { font-size:15px; }
  .pill { padding:1px 8px; border-radius:10px; font-weight:600; }
  .pill.ok { background:var(--ok); } .pill.bad { background:var(--bad); }
  main { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap:12px; padding:12px; }
  section { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
  section.wide { grid-column: 1 / -1; }
  section.two { grid-column: span 2; }
  @media (max-width: 900px) { section.two { grid-column: 1 / -1; } }
  h2 { font-size:13px; margin:0 0 8px; text-transform:uppercase; letter-spacing:.04em; color:var(--mute); }
  table { width:100%; border-collapse:collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--mute); font-weight:600; }
  td.num, th.num { text-align:right; }
  .swatch { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:6px; vertical-align:-1px; }
  .state { font-weight:600; } .state.up { color:var(--ok); } .state.down { color:var(--bad); } .state.drain { color:var(--warn); }
  .mute { color:var(--mute); } .small { font-size:12px; }
  .bar { position:relative; height:10px; background:var(--line); border-radius:5px; overflow:hidden; min-width:90px; }
  .bar > i { position:absolute; left:0; top:0; bottom:0; background:var(--info); }
  .bar.hot > i { background:var(--bad); } .bar.warm > i { background:var(--warn); }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  svg { display:block; width:100%; height:160px; }
  #error { color:var(--bad); }
</style>
</head>
<body>
<header>
  <h1>Gatewise — live</h1>
  <span id="ready" class="pill">…</span>
  <span class="fig">requests/s <b id="rps">0</b></span>
  <span class="fig">failures/s <b id="eps">0</b></span>
  <span class="fig">reverse <b id="tot-reverse">0</b></span>
  <span class="fig">forward <b id="tot-forward">0</b></span>
  <span class="fig">failures <b id="tot-failures">0</b></span>
  <span class="mute small" id="updated">not updated yet</span>
  <span id="error"></span>
</header>
<main>
  <section class="wide">
    <h2>Requests and failures per second, last 5 minutes (failures by cause)</h2>
    <svg id="chart" viewBox="0 0 900 160" preserveAspectRatio="none" role="img" aria-label="requests per second"></svg>
  </section>
  <section class="wide">
    <h2>Failures by cause</h2>
    <table id="causes"><thead><tr><th>cause</th><th class="num">last minute</th><th class="num">since start</th><th>what it means</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Endpoints (reverse)</h2>
    <table id="endpoints"><thead><tr><th>cluster</th><th>endpoint</th><th>state</th><th class="num">in flight</th><th class="num">conns</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Exits (forward)</h2>
    <table id="exits"><thead><tr><th>pool</th><th>exit</th><th>state</th><th class="num">active</th><th class="num">uses</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Queues and shedding</h2>
    <table id="queues"><thead><tr><th>where</th><th class="num">limit</th><th class="num">in flight / open</th><th class="num">queued / waiting</th><th class="num">shed</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="two">
    <h2>Top users by bytes</h2>
    <table id="users"><thead><tr><th>user</th><th>plan</th><th class="num">up</th><th class="num">down</th><th>quota</th><th>top refusal</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="wide">
    <h2>Recent failures</h2>
    <table id="failures"><thead><tr><th>time</th><th>face</th><th class="num">status</th><th>cause</th><th>request id</th><th>what happened</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.hash.slice(1)).get('token');
// Read once and kept in memory only: the fragment leaves the address bar (and the history).
if (token !== null) history.replaceState(null, '', location.pathname + location.search);
const headers = token ? { authorization: 'Bearer ' + token } : {};
const PALETTE = ['#d64545','#d99a1e','#8e44ad','#16a085','#c0392b','#2c3e50','#e67e22','#7f8c8d','#27ae60','#2980b9','#b03a2e','#6c3483'];
const colours = new Map();
function colour(cause) {
  if (!colours.has(cause)) colours.set(cause, PALETTE[colours.size % PALETTE.length]);
  return colours.get(cause);
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'style') e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== undefined && k !== null) e.append(k instanceof Node ? k : String(k));
  return e;
}
function fill(id, rows, empty) {
  const body = document.querySelector('#' + id + ' tbody');
  body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: '9', class: 'mute' }, empty))]));
}
function bytes(n) {
  const u = ['B','KiB','MiB','GiB','TiB']; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (Math.round(n * 10) / 10) + ' ' + u[i];
}
async function get(path) {
  const r = await fetch(path, { headers, cache: 'no-store' });
  if (r.status === 404) return undefined;
  if (!r.ok) throw new Error(path + ': ' + r.status);
  return r.json();
}
function chart(seconds) {
  const svg = document.getElementById('chart');
  const W = 900, H = 160, n = seconds.length, bw = W / n;
  let max = 1;
  for (const s of seconds) max = Math.max(max, s.reverse + s.forward);
  const ns = 'http://www.w3.org/2000/svg';
  const parts = [];
  seconds.forEach((s, i) => {
    const total = s.reverse + s.forward;
    if (!total) return;
    let failed = 0;
    let y = H;
    for (const [cause, c] of Object.entries(s.errors)) {
      failed += c;
      const h = c / max * (H - 10);
      y -= h;
      const r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', i * bw); r.setAttribute('y', y); r.setAttribute('width', Math.max(bw - 0.5, 0.5)); r.setAttribute('height', h);
      r.setAttribute('fill', colour(cause)); r.setAttribute('data-cause', cause);
      parts.push(r);
    }
    const ok = total - failed;
    if (ok > 0) {
      const h = ok / max * (H - 10);
      const r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', i * bw); r.setAttribute('y', y - h); r.setAttribute('width', Math.max(bw - 0.5, 0.5)); r.setAttribute('height', h);
      r.setAttribute('fill', '#9fcfb0');
      parts.push(r);
    }
  });
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', 4); label.setAttribute('y', 12); label.setAttribute('font-size', '11'); label.setAttribute('fill', '#6b7385');
  label.textContent = 'peak ' + max + '/s';
  parts.push(label);
  svg.replaceChildren(...parts);
}
async function tick() {
  try {
    // Only the faces that run are asked: the other face's routes answer 404, which a browser logs as an error.
    const status = await get('status');
    const faces = status.faces || { reverse: true, forward: true };
    const [traffic, clusters, exits, users, failures] = await Promise.all([
      get('traffic?seconds=300'), faces.reverse ? get('clusters') : undefined, faces.forward ? get('exits') : undefined, faces.forward ? get('users?limit=10') : undefined, get('failures?limit=25'),
    ]);
    const ready = document.getElementById('ready');
    ready.textContent = status.ready ? 'ready' : 'draining';
    ready.className = 'pill ' + (status.ready ? 'ok' : 'bad');
    const last = traffic.seconds.slice(-6, -1);
    const per = (f) => (last.reduce((a, s) => a + f(s), 0) / Math.max(1, last.length)).toFixed(1);
    document.getElementById('rps').textContent = per((s) => s.reverse + s.forward);
    document.getElementById('eps').textContent = per((s) => Object.values(s.errors).reduce((a, b) => a + b, 0));
    for (const k of ['reverse', 'forward', 'failures']) document.getElementById('tot-' + k).textContent = traffic.totals[k];
    chart(traffic.seconds);
    fill('causes', traffic.causes.map((c) => el('tr', { 'data-cause': c.code },
      el('td', {}, el('span', { class: 'swatch', style: 'background:' + colour(c.code) }), el('code', {}, c.code)),
      el('td', { class: 'num' }, c.lastMinute), el('td', { class: 'num' }, c.count),
      el('td', {}, el('b', {}, c.title), ' — ', c.explain))), 'No failures yet.');
    const eps = [];
    for (const [name, list] of Object.entries(clusters || {})) for (const e of list) {
      const st = e.draining ? ['drain', 'draining'] : e.ejectedForMs > 0 ? ['down', 'ejected ' + Math.ceil(e.ejectedForMs / 1000) + ' s'] : e.health === 'unhealthy' ? ['down', 'unhealthy'] : e.available ? ['up', 'up'] : ['down', 'unavailable'];
      eps.push(el('tr', { 'data-endpoint': e.endpoint }, el('td', {}, name), el('td', {}, el('code', {}, e.endpoint)), el('td', { class: 'state ' + st[0] }, st[1]), el('td', { class: 'num' }, e.inflight), el('td', { class: 'num' }, e.connections)));
    }
    fill('endpoints', eps, clusters ? 'No endpoints.' : 'No reverse gateway runs.');
    const xs = [];
    for (const [name, p] of Object.entries(exits ? exits.pools : {})) for (const x of p.exits) {
      xs.push(el('tr', {}, el('td', {}, name + (p.sessions ? ' (' + p.sessions + ' sessions)' : '')), el('td', {}, el('code', {}, x.exit)), el('td', { class: 'state ' + (x.down ? 'down' : 'up') }, x.down ? 'cooling down' : 'up'), el('td', { class: 'num' }, x.active), el('td', { class: 'num' }, x.uses)));
    }
    fill('exits', xs, exits ? 'No egress pools: connections leave directly.' : 'No forward proxy runs.');
    const shedCause = traffic.causes.find((c) => c.code === 'connection_limit_reached');
    const qs = [];
    for (const [name, a] of Object.entries(status.admission)) qs.push(el('tr', {}, el('td', {}, 'cluster ' + name), el('td', { class: 'num' }, a.limit), el('td', { class: 'num' }, a.inflight), el('td', { class: 'num' }, a.queued), el('td', { class: 'num' }, '')));
    status.forwardListeners.forEach((l, i) => qs.push(el('tr', {}, el('td', {}, 'forward listener ' + (i + 1)), el('td', { class: 'num' }, ''), el('td', { class: 'num' }, l.open), el('td', { class: 'num' }, l.waiting), el('td', { class: 'num' }, l.shed + ' (' + l.refused + ' refused)'))));
    qs.push(el('tr', {}, el('td', {}, 'requests shed at a cluster limit'), el('td', {}, ''), el('td', {}, ''), el('td', {}, ''), el('td', { class: 'num' }, shedCause ? shedCause.count : 0)));
    fill('queues', qs, '');
    fill('users', (users ? users.users : []).map((u) => {
      const q = u.quotas.reduce((a, b) => (b.fraction > (a ? a.fraction : -1) ? b : a), undefined);
      const pct = q ? Math.min(100, Math.round(q.fraction * 100)) : 0;
      const quota = q ? el('div', { title: q.quota + ': ' + bytes(q.used) + ' of ' + bytes(q.limit) }, el('div', { class: 'bar ' + (pct >= 90 ? 'hot' : pct >= 70 ? 'warm' : '') }, el('i', { style: 'width:' + pct + '%' })), el('span', { class: 'small mute' }, pct + '% of ' + q.quota)) : el('span', { class: 'mute small' }, 'no quota');
      const top = u.refusals[0];
      return el('tr', { 'data-user': u.user }, el('td', {}, u.user), el('td', {}, u.plan || '—'), el('td', { class: 'num' }, bytes(u.bytesUp)), el('td', { class: 'num' }, bytes(u.bytesDown)), el('td', {}, quota),
        el('td', { class: 'small' }, top ? el('span', { title: top.explain }, el('code', {}, top.code), ' ×' + top.count + ' — ' + top.title) : el('span', { class: 'mute' }, 'none')));
    }), users ? 'No forward users seen yet.' : 'No forward proxy runs.');
    fill('failures', failures.failures.map((f) => el('tr', { 'data-request-id': f.requestId },
      el('td', { class: 'small' }, new Date(f.time).toLocaleTimeString()), el('td', {}, f.face), el('td', { class: 'num' }, f.status !== undefined ? f.status : f.reply !== undefined ? 'SOCKS ' + f.reply : '—'),
      el('td', {}, el('span', { class: 'swatch', style: 'background:' + colour(f.reason || f.error) }), el('code', {}, f.reason || f.error)),
      el('td', {}, el('code', { class: 'small' }, f.requestId)),
      el('td', {}, el('b', {}, f.explain.title), ' — ', f.explain.explain, f.detail ? el('div', { class: 'small mute' }, f.detail) : null))), 'No failures yet.');
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.getElementById('error').textContent = '';
  } catch (err) {
    document.getElementById('error').textContent = 'cannot reach the admin API: ' + err.message;
  }
}
async function loop() {
  await tick();
  setTimeout(loop, 1000);
}
loop();
</script>
</body>
</html>
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const inline = (tag: string): string => {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(DASHBOARD_HTML);
  if (!m) throw new Error(`the dashboard has no inline <${tag}>`);
  return m[1]!;
};

/**
 * The dashboard's Content-Security-Policy: nothing loads from anywhere, its one inline script
 * and one inline style run by their hashes (no 'unsafe-inline'), it talks only to this
 * listener, and no page may frame it. Styles set through the CSSOM (`el.style`) are allowed.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(inline('script'))}`,
  `style-src ${sha256(inline('style'))}`,
  "connect-src 'self'",
  "img-src 'self' data:", // data: for the empty icon, so the browser asks for no /favicon.ico (a 404 in its console)
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
