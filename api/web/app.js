/* CareChain nurses' page: alert inbox (live), resident plots, coordinator overview.
 *
 * Plain JavaScript, no build step, no network beyond this API. Swedish first,
 * English via the toggle; every time is shown in Europe/Stockholm. Resident ids
 * in URLs are pseudonyms only (never a personnummer).
 *
 * The live stream is read with fetch() and a ReadableStream rather than
 * EventSource: EventSource cannot send an Authorization header, and a token in a
 * URL ends up in logs. The stream is parsed as text/event-stream here and
 * reconnects with Last-Event-ID, so no alert is missed across a reconnect.
 */
"use strict";

const TZ = "Europe/Stockholm";
const TOKEN_KEY = "carechain.token";
const LANG_KEY = "carechain.lang";

/* Endpoints of the care-chain API used by the page (see docs/web.md). */
const API = {
  alerts: (query) => `/v1/alerts?${query}`,
  alert: (id) => `/v1/alerts/${encodeURIComponent(id)}`,
  ack: (id) => `/v1/alerts/${encodeURIComponent(id)}/acknowledge`,
  resolve: (id) => `/v1/alerts/${encodeURIComponent(id)}/resolve`,
  dismiss: (id) => `/v1/alerts/${encodeURIComponent(id)}/dismiss`,
  stream: "/v1/alerts/stream",
  residents: "/v1/residents?limit=200",
  activity: (id, since) => `/v1/residents/${encodeURIComponent(id)}/activity?since=${encodeURIComponent(since)}`,
  vitals: (id, since) => `/v1/residents/${encodeURIComponent(id)}/vitals?since=${encodeURIComponent(since)}`,
  doses: (id, since) => `/v1/residents/${encodeURIComponent(id)}/medication?limit=500&since=${encodeURIComponent(since)}`,
  responseStats: (since) => `/v1/statistics/response?since=${encodeURIComponent(since)}`,
  aiRegister: (weeks) => `/v1/ai-register?weeks=${weeks}`,
  robotDoses: (since) => `/v1/statistics/medication-robot?since=${encodeURIComponent(since)}`,
  demoTokens: "/demo/tokens",
};

const state = {
  lang: "sv",
  dict: {},
  token: null,
  claims: null,
  alerts: new Map(), // id -> alert
  filter: "active",
  lastEventId: null,
  streamAbort: null,
  streamRetry: 0,
  residents: [],
  view: "inbox",
};

/* ------------------------------------------------------------------ i18n */

async function loadLang(lang) {
  const res = await fetch(`/static/i18n/${lang}.json`);
  state.dict = await res.json();
  state.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang;
  applyI18n(document);
}

function t(key, vars) {
  let s = state.dict[key];
  if (s === undefined) return vars && vars.fallback !== undefined ? vars.fallback : key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

function applyI18n(root) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-aria]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nAria)); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
}

function locale() { return state.lang === "sv" ? "sv-SE" : "en-GB"; }

function fmtTime(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ, day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  }).format(new Date(iso));
}

/* Local (Stockholm) calendar parts of an instant: {date: "2026-11-23", hour: 7}. */
const partsFmt = new Intl.DateTimeFormat("en-CA", {
  timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", hourCycle: "h23",
});
function localParts(d) {
  const p = Object.fromEntries(partsFmt.formatToParts(d).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, hour: Number(p.hour) % 24 };
}
function fmtDay(dateStr) {
  // dateStr is a Stockholm calendar date; noon UTC keeps it on the same date everywhere.
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC", weekday: "short", day: "numeric", month: "numeric" })
    .format(new Date(`${dateStr}T12:00:00Z`));
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "–";
  const s = Number(seconds);
  if (s < 90) return t("seconds", { n: Math.round(s) });
  if (s < 5400) return t("minutes", { n: Math.round(s / 60) });
  return t("hours", { n: (s / 3600).toFixed(1) });
}

/* ------------------------------------------------------------------ auth */

function decodeClaims(token) {
  const part = token.split(".")[1];
  if (!part) throw new Error("not a JWT");
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const json = decodeURIComponent(Array.from(atob(b64), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
  return JSON.parse(json);
}

function signIn(token) {
  const claims = decodeClaims(token.trim());
  if (claims.exp && claims.exp * 1000 < Date.now()) throw new Error(t("login.expired"));
  state.token = token.trim();
  state.claims = claims;
  sessionStorage.setItem(TOKEN_KEY, state.token);
}

function signOut() {
  stopStream();
  state.token = null;
  state.claims = null;
  state.alerts.clear();
  // Nothing of one user's view may survive into the next user's.
  state.residents = [];
  state.lastEventId = null;
  document.getElementById("resident-select").replaceChildren();
  for (const id of ["alerts", "chart-activity", "chart-vitals", "chart-doses", "overview-cards", "chart-weekly", "chart-kinds"]) {
    document.getElementById(id).replaceChildren();
  }
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "";
  render();
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
  });
  if (res.status === 401) {
    toast(t("error.unauthorized"));
    signOut();
    throw new ApiError(401, "unauthorized");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const detail = (data && (data.detail || data.title)) || res.statusText;
    throw new ApiError(res.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return data;
}

function items(data) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data.items)) return data.items;
  if (data && Array.isArray(data.data)) return data.data;
  return [];
}

function errorText(err) {
  if (err instanceof ApiError && err.status === 403) return t("error.forbidden");
  if (err instanceof ApiError && err.status === 404) return t("error.notfound");
  return t("error.generic", { detail: err.message });
}

let toastTimer = null;
function toast(msg) {
  const el = document.getElementById("toast");
  el.textContent = msg;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ""; }, 5000);
}

/* ------------------------------------------------------------------ routing */

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return { view: parts[0] || "inbox", arg: parts[1] ? decodeURIComponent(parts[1]) : null };
}

async function render() {
  const signedIn = Boolean(state.token);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("logout").hidden = !signedIn;
  const who = document.getElementById("whoami");
  who.hidden = !signedIn;
  if (signedIn) {
    const c = state.claims;
    who.textContent = t("login.as", { user: c.sub, role: c.role, org: c.org });
  }
  const route = signedIn ? currentRoute() : { view: "login", arg: null };
  for (const v of ["login", "inbox", "resident", "overview"]) {
    document.getElementById(`view-${v}`).hidden = v !== route.view;
  }
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.dataset.view === route.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  state.view = route.view;
  if (route.view === "login") return loadDemoTokens();
  if (route.view === "inbox") {
    startStream();
    return loadAlerts();
  }
  if (route.view === "resident") return showResident(route.arg);
  if (route.view === "overview") return showOverview();
}

/* ------------------------------------------------------------------ login */

async function loadDemoTokens() {
  const box = document.getElementById("demo-tokens");
  try {
    const res = await fetch(API.demoTokens);
    if (!res.ok) { box.hidden = true; return; }
    const list = items(await res.json());
    const sel = document.getElementById("demo-select");
    sel.replaceChildren(new Option("—", ""));
    for (const d of list) {
      sel.append(new Option(d.label || `${d.user} (${d.role}, ${d.org})`, d.token));
    }
    box.hidden = list.length === 0;
  } catch {
    box.hidden = true;
  }
}

function onLogin(ev) {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  const pasted = document.getElementById("token").value.trim();
  const picked = document.getElementById("demo-select").value;
  try {
    signIn(pasted || picked);
    document.getElementById("token").value = "";
    if (!location.hash || location.hash === "#") location.hash = "#/inbox";
    else render();
  } catch (e) {
    err.textContent = e.message && e.message !== "not a JWT" ? e.message : t("login.invalid");
  }
}

/* ------------------------------------------------------------------ inbox */

const ACTIVE = new Set(["open", "proposed", "acknowledged", "accepted"]);
const SEVERITY_ORDER = { critical: 0, high: 1, medium: 2, low: 3 };

function alertId(a) { return String(a.id ?? a.alert_id); }

async function loadAlerts() {
  try {
    // The list filters one status at a time: ask for each active state (or everything) and merge.
    // status=open means every state before resolved/dismissed.
    const page = await api(API.alerts(state.filter === "active" ? "status=open&limit=200" : "limit=200"));
    // Merge: an alert fetched alone carries its history (who acknowledged, the outcome); keep it.
    for (const a of items(page)) state.alerts.set(alertId(a), { ...state.alerts.get(alertId(a)), ...a });
    renderAlerts();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) toast(errorText(e));
  }
}

function renderAlerts() {
  const list = document.getElementById("alerts");
  const shown = [...state.alerts.values()]
    .filter((a) => state.filter === "all" || ACTIVE.has(a.status))
    .sort((a, b) => {
      const open = Number(!ACTIVE.has(a.status)) - Number(!ACTIVE.has(b.status));
      if (open) return open;
      const sev = (SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9);
      if (sev) return sev;
      return String(b.created_at).localeCompare(String(a.created_at));
    });
  const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
  const wanted = new Set(shown.map(alertId));
  for (const [id, li] of existing) if (!wanted.has(id)) li.remove();
  shown.forEach((a, i) => {
    const id = alertId(a);
    let li = existing.get(id);
    if (!li) li = makeAlertItem(a);
    fillAlertItem(li, a);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  document.getElementById("inbox-empty").hidden = shown.length > 0;
}

function makeAlertItem(a) {
  const li = document.getElementById("alert-tpl").content.firstElementChild.cloneNode(true);
  li.dataset.id = alertId(a);
  applyI18n(li);
  const uid = `a${alertId(a).replace(/[^A-Za-z0-9]/g, "")}`;
  li.querySelectorAll("input[name=outcome]").forEach((r) => { r.name = `outcome-${uid}`; });
  li.querySelector(".act-ack").addEventListener("click", () => act(li, "ack"));
  li.querySelector(".act-resolve").addEventListener("click", () => toggleForm(li, ".resolve-form"));
  li.querySelector(".act-dismiss").addEventListener("click", () => toggleForm(li, ".dismiss-form"));
  li.querySelectorAll(".cancel").forEach((b) => b.addEventListener("click", () => toggleForm(li, null)));
  li.querySelector(".resolve-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const checked = li.querySelector(".resolve-form input:checked");
    if (checked) act(li, "resolve", { outcome: checked.value });
  });
  li.querySelector(".dismiss-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const reason = li.querySelector(".dismiss-form input[name=reason]").value.trim();
    if (reason) act(li, "dismiss", { reason });
  });
  return li;
}

function toggleForm(li, which) {
  for (const sel of [".resolve-form", ".dismiss-form"]) {
    li.querySelector(sel).hidden = sel !== which || !li.querySelector(sel).hidden;
  }
  const open = which && li.querySelector(which);
  if (open && !open.hidden) open.querySelector("input")?.focus();
}

function fillAlertItem(li, a) {
  const sev = a.severity || "medium";
  li.className = `alert sev-${sev}${ACTIVE.has(a.status) ? "" : " is-closed"}${li.classList.contains("is-new") ? " is-new" : ""}`;
  li.dataset.status = a.status;
  li.querySelector(".sev").textContent = t(`alert.severity.${sev}`, { fallback: sev });
  li.querySelector(".kind").textContent = t(`kind.${a.kind}`, { fallback: a.kind });
  li.querySelector(".status").textContent = t(`alert.status.${a.status}`, { fallback: a.status });
  const time = li.querySelector(".time");
  time.dateTime = a.event_time || a.created_at || "";
  time.textContent = fmtTime(a.event_time || a.created_at);
  li.querySelector(".reason").textContent = (state.lang === "sv" ? a.reason_sv : a.reason) || a.reason || a.reason_sv || "";
  const res = li.querySelector(".resident");
  res.replaceChildren();
  if (a.resident_id) {
    const link = document.createElement("a");
    link.href = `#/resident/${encodeURIComponent(a.resident_id)}`;
    link.textContent = a.resident_label || a.resident_id;
    res.append(link);
  }
  li.querySelector(".detector").textContent = [a.detector, a.detector_version].filter(Boolean).join(" ") || "–";
  li.querySelector(".family").textContent = t(`alert.family.${a.family}`, { fallback: a.family || "–" });
  const note = li.querySelector(".note");
  const outcome = a.outcome || fromHistory(a, "resolved", "outcome");
  const dismissReason = a.dismiss_reason || fromHistory(a, "dismissed", "reason");
  const ackedBy = a.acknowledged_by || fromHistory(a, "acknowledged", "actor");
  if (a.status === "resolved" && outcome) {
    note.textContent = t("alert.resolved_with", { outcome: t(`alert.outcome.${outcome}`, { fallback: outcome }) });
  } else if (a.status === "dismissed" && dismissReason) {
    note.textContent = `${t("alert.status.dismissed")}: ${dismissReason}`;
  } else if (a.acknowledged_at) {
    note.textContent = ackedBy
      ? t("alert.acked_by", { user: ackedBy, time: fmtTime(a.acknowledged_at) })
      : t("alert.acked", { time: fmtTime(a.acknowledged_at) });
  } else {
    note.textContent = "";
  }
  const active = ACTIVE.has(a.status);
  li.querySelector(".actions").hidden = !active;
  li.querySelector(".act-ack").hidden = !(a.status === "open" || a.status === "proposed");
  if (!active) toggleForm(li, null);
}

/* A value from the alert's lifecycle history (GET /v1/alerts/{id} returns it): actor or a detail field. */
function fromHistory(a, type, key) {
  const steps = (a.history || []).filter((e) => e.type === type);
  const last = steps[steps.length - 1];
  if (!last) return null;
  return key === "actor" ? last.actor || null : (last.detail && last.detail[key]) || null;
}

async function act(li, action, body = {}) {
  const id = li.dataset.id;
  const url = action === "ack" ? API.ack(id) : action === "resolve" ? API.resolve(id) : API.dismiss(id);
  li.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  try {
    const result = await api(url, { method: "POST", body });
    let fresh = null;
    try { fresh = await api(API.alert(id)); } catch { /* keep what the action returned */ }
    state.alerts.set(id, { ...state.alerts.get(id), ...(result || {}), ...(fresh || {}) });
    toast(t("alert.done"));
    renderAlerts();
  } catch (e) {
    toast(errorText(e));
  } finally {
    li.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}

/* -------------------------------------------------------------- live stream */

function setLive(s) {
  const el = document.getElementById("live");
  el.dataset.state = s;
  el.textContent = t(s === "on" ? "inbox.live.on" : s === "connecting" ? "inbox.live.connecting" : "inbox.live.off");
}

function stopStream() {
  if (state.streamAbort) state.streamAbort.abort();
  state.streamAbort = null;
}

async function startStream() {
  if (state.streamAbort || !state.token) return;
  const ctrl = new AbortController();
  state.streamAbort = ctrl;
  setLive("connecting");
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${state.token}` };
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  try {
    const res = await fetch(API.stream, { headers, signal: ctrl.signal, cache: "no-store" });
    if (res.status === 401) { signOut(); return; }
    if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
    setLive("on");
    state.streamRetry = 0;
    await readEventStream(res.body, onStreamEvent);
    throw new Error("stream ended");
  } catch (e) {
    if (ctrl.signal.aborted) return;
    setLive("off");
    state.streamAbort = null;
    const delay = Math.min(15000, 500 * 2 ** state.streamRetry++);
    setTimeout(() => { if (state.token && !state.streamAbort) startStream(); }, delay);
  }
}

/* Parse a text/event-stream body (WHATWG rules: id, event, data, comments). */
async function readEventStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ev = { id: null, event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (ev.data.length) onEvent({ id: ev.id, event: ev.event, data: ev.data.join("\n") });
        ev = { id: null, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") ev.data.push(val);
      else if (field === "event") ev.event = val;
      else if (field === "id") ev.id = val;
    }
  }
}

async function onStreamEvent(ev) {
  if (ev.id) state.lastEventId = ev.id;
  let payload;
  try { payload = JSON.parse(ev.data); } catch { return; }
  // An alert event carries the alert (or at least its id); fetch it when only the id came.
  let alert = payload.alert || (payload.reason_sv !== undefined || payload.reason !== undefined ? payload : null);
  const id = alert ? alertId(alert) : String(payload.alert_id ?? "");
  if (!id) return;
  if (!alert || alert.status === undefined) {
    try { alert = await api(API.alert(id)); } catch { return; }
  }
  const isNew = !state.alerts.has(id);
  state.alerts.set(id, { ...state.alerts.get(id), ...alert });
  if (state.view === "inbox") {
    renderAlerts();
    if (isNew) {
      const li = document.querySelector(`#alerts li[data-id="${CSS.escape(id)}"]`);
      if (li) li.classList.add("is-new");
      toast(`${t("inbox.new")}: ${t(`kind.${alert.kind}`, { fallback: alert.kind })}`);
    }
  }
}

/* ------------------------------------------------------------------ SVG */

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}
function chartRoot(w, h, label) {
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  return root;
}
function noData(container) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = t("resident.nodata");
  container.replaceChildren(p);
}

/* Days × hours heat map of activity counts. */
function drawHeatmap(container, rows, days) {
  const counts = new Map();
  for (const r of rows) {
    const ts = r.bucket || r.hour || r.ts || r.time;
    if (!ts) continue;
    const { date, hour } = localParts(new Date(ts));
    const key = `${date}|${hour}`;
    counts.set(key, (counts.get(key) || 0) + Number(r.count ?? r.events ?? r.motion_events ?? r.value ?? 0));
  }
  if (counts.size === 0) return noData(container);
  const dates = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i--) dates.push(localParts(new Date(today.getTime() - i * 86400000)).date);
  const max = Math.max(1, ...counts.values());
  const cell = 22, left = 86, top = 22;
  const w = left + 24 * cell + 10, h = top + dates.length * cell + 10;
  const root = chartRoot(w, h, t("resident.activity"));
  for (let hr = 0; hr < 24; hr += 3) {
    root.append(svg("text", { x: left + hr * cell + cell / 2, y: 14, "text-anchor": "middle" }, String(hr).padStart(2, "0")));
  }
  dates.forEach((d, i) => {
    root.append(svg("text", { x: left - 6, y: top + i * cell + cell * 0.68, "text-anchor": "end" }, fmtDay(d)));
    for (let hr = 0; hr < 24; hr++) {
      const v = counts.get(`${d}|${hr}`) || 0;
      const a = v === 0 ? 0 : 0.15 + 0.85 * (v / max);
      const rect = svg("rect", {
        x: left + hr * cell + 1, y: top + i * cell + 1, width: cell - 2, height: cell - 2, rx: 3,
        fill: v === 0 ? "#eef0f3" : `rgba(11,92,173,${a.toFixed(3)})`,
      });
      rect.append(svg("title", {}, `${fmtDay(d)} ${String(hr).padStart(2, "0")}:00 – ${v}`));
      root.append(rect);
    }
  });
  container.replaceChildren(root);
}

/* Small multiples: one line chart per vital sign. */
const VITALS = [
  { kind: "heart_rate", key: "resident.heart_rate", color: "#a50e0e" },
  { kind: "spo2", key: "resident.spo2", color: "#0b5cad" },
  { kind: "temperature", key: "resident.temperature", color: "#7a5c00" },
];
function drawVitals(container, rows, days) {
  const series = new Map(VITALS.map((v) => [v.kind, []]));
  for (const r of rows) {
    const kind = r.kind || r.code;
    const ts = r.bucket || r.hour || r.ts || r.time;
    const val = Number(r.avg ?? r.avg_value ?? r.mean ?? r.value ?? r.value_num);
    if (series.has(kind) && ts && Number.isFinite(val)) series.get(kind).push([new Date(ts).getTime(), val]);
  }
  if ([...series.values()].every((s) => s.length === 0)) return noData(container);
  const end = Date.now(), start = end - days * 86400000;
  const frag = document.createDocumentFragment();
  for (const v of VITALS) {
    const pts = series.get(v.kind).sort((a, b) => a[0] - b[0]);
    const w = 720, h = 130, left = 44, right = 34, top = 20, bottom = 22;
    const root = chartRoot(w, h, t(v.key));
    root.append(svg("text", { x: left, y: 13, "font-weight": 600 }, t(v.key)));
    if (pts.length === 0) {
      root.append(svg("text", { x: left, y: h / 2 }, t("resident.nodata")));
      frag.append(root);
      continue;
    }
    let lo = Math.min(...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
    if (hi - lo < 1) { lo -= 1; hi += 1; }
    const x = (ms) => left + ((ms - start) / (end - start)) * (w - left - right);
    const y = (val) => top + (1 - (val - lo) / (hi - lo)) * (h - top - bottom);
    for (const val of [lo, (lo + hi) / 2, hi]) {
      root.append(svg("line", { class: "grid-line", x1: left, x2: w - right, y1: y(val), y2: y(val) }));
      root.append(svg("text", { x: left - 4, y: y(val) + 4, "text-anchor": "end" }, val.toFixed(v.kind === "temperature" ? 1 : 0)));
    }
    const step = Math.max(1, Math.round(days / 7));
    for (let i = 0; i <= days; i += step) {
      const ms = start + i * 86400000;
      root.append(svg("text", { x: x(ms), y: h - 6, "text-anchor": "middle" }, fmtDay(localParts(new Date(ms)).date)));
    }
    root.append(svg("polyline", {
      points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: v.color, "stroke-width": 1.8,
    }));
    frag.append(root);
  }
  container.replaceChildren(frag);
}

/* Doses per day and slot: ✓ taken, ✗ missed (symbol and colour, never colour alone). */
function drawDoses(container, rows, days) {
  const cells = new Map();
  const slots = new Set();
  for (const r of rows) {
    const ts = r.ts || r.due_at || r.time;
    if (!ts) continue;
    const status = (r.status || r.kind || "").replace("medication.dose_", "");
    if (status !== "taken" && status !== "missed") continue; // due, dispensed, faults: not a dose outcome
    const text = r.value_text ?? (typeof r.value === "string" ? r.value : null);
    const slot = r.slot || text || `${String(localParts(new Date(ts)).hour).padStart(2, "0")}:00`;
    const { date } = localParts(new Date(ts));
    slots.add(slot);
    const key = `${date}|${slot}`;
    // A taken dose wins over a missed report for the same slot (late intake).
    if (cells.get(key) !== "taken") cells.set(key, status);
  }
  if (cells.size === 0) return noData(container);
  const dates = [];
  for (let i = days - 1; i >= 0; i--) dates.push(localParts(new Date(Date.now() - i * 86400000)).date);
  const slotList = [...slots].sort();
  const cell = 26, left = 56, top = 72;
  const w = left + dates.length * cell + 50, h = top + slotList.length * cell + 10;
  const root = chartRoot(w, h, t("resident.medication"));
  dates.forEach((d, i) => {
    const tx = left + i * cell + cell / 2;
    root.append(svg("text", { x: tx, y: top - 6, "text-anchor": "start", transform: `rotate(-60 ${tx} ${top - 6})` }, fmtDay(d)));
  });
  let taken = 0, missed = 0;
  slotList.forEach((slot, j) => {
    root.append(svg("text", { x: left - 6, y: top + j * cell + cell * 0.66, "text-anchor": "end" }, slot));
    dates.forEach((d, i) => {
      const s = cells.get(`${d}|${slot}`);
      const fill = s === "taken" ? "#1e6b2e" : s === "missed" ? "#a50e0e" : "#eef0f3";
      const label = s === "taken" ? t("resident.dose.taken") : s === "missed" ? t("resident.dose.missed") : t("resident.dose.pending");
      if (s === "taken") taken++;
      if (s === "missed") missed++;
      const g = svg("g");
      g.append(svg("rect", { x: left + i * cell + 1, y: top + j * cell + 1, width: cell - 2, height: cell - 2, rx: 4, fill }));
      if (s === "taken" || s === "missed") {
        g.append(svg("text", {
          x: left + i * cell + cell / 2, y: top + j * cell + cell * 0.7, "text-anchor": "middle", fill: "#fff", "font-weight": 700,
        }, s === "taken" ? "✓" : "✗"));
      }
      g.append(svg("title", {}, `${fmtDay(d)} ${slot}: ${label}`));
      root.append(g);
    });
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const [c, label, n] of [["#1e6b2e", t("resident.dose.taken"), taken], ["#a50e0e", t("resident.dose.missed"), missed]]) {
    const s = document.createElement("span");
    s.style.setProperty("--c", c);
    s.textContent = `${label}: ${n}`;
    legend.append(s);
  }
  container.replaceChildren(root, legend);
}

/* Vertical bars (label, value). */
function drawBars(container, pairs, label, fmt = (v) => String(v)) {
  if (pairs.length === 0) return noData(container);
  // As wide as the bars need (at most 720): a few bars stay legible when scaled to a phone.
  const h = 200, left = 40, bottom = 40, top = 16;
  const w = Math.min(720, Math.max(240, left + 10 + pairs.length * 90));
  const max = Math.max(...pairs.map((p) => p[1]), 0.0001);
  const bw = (w - left - 10) / pairs.length;
  const root = chartRoot(w, h, label);
  pairs.forEach(([name, val], i) => {
    const bh = (val / max) * (h - top - bottom);
    const x = left + i * bw;
    const rect = svg("rect", { x: x + 3, y: h - bottom - bh, width: Math.max(2, bw - 6), height: bh, fill: "#0b5cad", rx: 2 });
    rect.append(svg("title", {}, `${name}: ${fmt(val)}`));
    root.append(rect);
    root.append(svg("text", { x: x + bw / 2, y: h - bottom - bh - 4, "text-anchor": "middle" }, fmt(val)));
    root.append(svg("text", { x: x + bw / 2, y: h - bottom + 14, "text-anchor": "middle" }, name));
  });
  root.append(svg("line", { x1: left, x2: w - 10, y1: h - bottom, y2: h - bottom, stroke: "#888" }));
  container.replaceChildren(root);
}

/* ------------------------------------------------------------------ resident page */

async function showResident(arg) {
  const sel = document.getElementById("resident-select");
  if (state.residents.length === 0) {
    try {
      state.residents = items(await api(API.residents));
    } catch (e) {
      toast(errorText(e));
    }
    sel.replaceChildren(...state.residents.map((r) => {
      const id = r.resident_id || r.id;
      // Names only appear when the API returned them (identity scope); the URL keeps the pseudonym.
      return new Option(r.display_name || r.name || id, id);
    }));
  }
  document.getElementById("resident-none").hidden = state.residents.length > 0;
  const id = arg || sel.value;
  if (!id) return;
  if ([...sel.options].some((o) => o.value === id)) sel.value = id;
  else sel.append(new Option(id, id, true, true));
  const days = Number(document.getElementById("resident-days").value);
  const since = new Date(Date.now() - days * 86400000).toISOString();
  const charts = [
    ["chart-activity", API.activity(id, since), drawHeatmap],
    ["chart-vitals", API.vitals(id, since), drawVitals],
    ["chart-doses", API.doses(id, since), drawDoses],
  ];
  await Promise.all(charts.map(async ([el, url, draw]) => {
    const box = document.getElementById(el);
    try {
      draw(box, items(await api(url)), days);
    } catch (e) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = e instanceof ApiError && e.status === 403 ? t("resident.denied") : errorText(e);
      box.replaceChildren(p);
    }
  }));
}

/* ------------------------------------------------------------------ overview */

async function showOverview() {
  const days = 28;
  const since = new Date(Date.now() - days * 86400000).toISOString();
  document.getElementById("overview-period").textContent = t("overview.period", { days });
  const cards = document.getElementById("overview-cards");
  // Three aggregated, pseudonymous sources; each may be refused (role) without spoiling the others.
  const [resp, register, robot] = await Promise.all([
    api(API.responseStats(since)).catch(() => null),
    api(API.aiRegister(days / 7)).catch(() => null),
    api(API.robotDoses(since)).catch(() => null),
  ]);
  if (!resp && !register && !robot) {
    cards.textContent = t("error.forbidden");
    return;
  }
  const rows = items(resp);
  const total = rows.reduce((n, r) => n + Number(r.alerts || 0), 0);
  const weighted = (key) => {
    const w = rows.filter((r) => r[key] !== null && r[key] !== undefined);
    const n = w.reduce((acc, r) => acc + Number(r.alerts || 0), 0);
    return n ? w.reduce((acc, r) => acc + Number(r[key]) * Number(r.alerts || 0), 0) / n : null;
  };
  const org = state.claims && state.claims.org;
  const perDetector = items(register).map((d) => {
    const site = (d.per_site || []).find((p) => p.org_id === org) || {};
    return { name: d.name, perWeek: Number(site.alerts_per_resident_week || 0), dismiss: site.dismiss_rate };
  }).filter((d) => d.perWeek > 0);
  const perWeek = perDetector.reduce((n, d) => n + d.perWeek, 0);
  const dismiss = perWeek ? perDetector.reduce((n, d) => n + Number(d.dismiss || 0) * d.perWeek, 0) / perWeek : null;
  const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(Number(v) * 100)} %`);
  const num = (v, d = 0) => (v === null || v === undefined ? "–" : Number(v).toLocaleString(locale(), { maximumFractionDigits: d }));
  const kpis = [
    [t("overview.ack_time"), fmtDuration(weighted("ack_p50_s")), t("overview.median")],
    [t("overview.resolve_time"), fmtDuration(weighted("resolve_p50_s")), t("overview.median")],
    [t("overview.alerts_per_week"), register ? num(perWeek, 2) : "–", ""],
    [t("overview.dismiss_rate"), pct(dismiss), ""],
    [t("overview.doses_robot"), robot ? num(robot.doses_taken) : "–", ""],
    [t("overview.rounds_saved"), robot ? num(robot.rounds_saved) : "–", t("overview.rounds_saved.desc")],
  ];
  cards.replaceChildren(...kpis.map(([label, value, sub]) => {
    const d = document.createElement("div");
    d.className = "kpi";
    for (const [cls, text] of [["label", label], ["value", value], ["sub", sub]]) {
      const e = document.createElement("div");
      e.className = cls;
      e.textContent = text;
      d.append(e);
    }
    return d;
  }));
  drawBars(
    document.getElementById("chart-weekly"),
    perDetector.map((d) => [d.name, d.perWeek]),
    t("overview.alerts_per_week"),
    (v) => v.toLocaleString(locale(), { maximumFractionDigits: 2 }),
  );
  const byKind = new Map();
  for (const r of rows) byKind.set(r.kind, (byKind.get(r.kind) || 0) + Number(r.alerts || 0));
  drawBars(
    document.getElementById("chart-kinds"),
    [...byKind].map(([k, v]) => [t(`kind.${k}`, { fallback: k }), v]),
    `${t("overview.by_kind")} (${total})`,
  );
}

/* ------------------------------------------------------------------ start */

async function main() {
  const lang = localStorage.getItem(LANG_KEY) || "sv";
  await loadLang(lang);
  document.getElementById("lang-toggle").addEventListener("click", async () => {
    await loadLang(state.lang === "sv" ? "en" : "sv");
    render();
  });
  document.getElementById("logout").addEventListener("click", signOut);
  document.getElementById("login-form").addEventListener("submit", onLogin);
  document.getElementById("inbox-filter").addEventListener("change", (ev) => {
    state.filter = ev.target.value;
    loadAlerts();
  });
  document.getElementById("resident-select").addEventListener("change", (ev) => {
    location.hash = `#/resident/${encodeURIComponent(ev.target.value)}`;
  });
  document.getElementById("resident-days").addEventListener("change", () => showResident(currentRoute().arg));
  window.addEventListener("hashchange", render);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    try { signIn(saved); } catch { sessionStorage.removeItem(TOKEN_KEY); }
  }
  // A demo link may carry a token in the fragment (#token=...): take it and drop it from the URL at once.
  const m = location.hash.match(/^#token=([^&]+)/);
  if (m) {
    try { signIn(decodeURIComponent(m[1])); } catch { /* fall through to login */ }
    history.replaceState(null, "", location.pathname + "#/inbox");
  }
  render();
}

main();
