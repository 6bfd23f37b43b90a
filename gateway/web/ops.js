// The operator dashboard, fed by `GET /v1/ops/events` (SSE): a JSON snapshot of gateway figures
// about once a second, plus events such as breaker changes. Every field is optional: a figure
// the gateway does not report shows "—", and unknown numeric fields are listed as they come.

import { LineChart } from "./chart.js";
import { byId, el, formatMs, formatTime } from "./dom.js";
import { Notices } from "./notices.js";
import { followFeed } from "./sse.js";
import { claimsOf, clearToken, hasRole, msUntilExpiry, saveToken, takeToken } from "./token.js";

const FEED = "/v1/ops/events";
const STALE_AFTER_MS = 5000;
const LOG_MAX = 30;
const TILES = {
  active_sessions: (v) => String(Math.round(v)),
  ttft_p50_ms: formatMs,
  ttft_p95_ms: formatMs,
  error_rate: (v) => `${(v <= 1 ? v * 100 : v).toFixed(v && v < 0.01 ? 2 : 1)} %`,
  assess_queue_depth: (v) => String(Math.round(v)),
};
const HIDDEN_KEYS = new Set(["type", "ts", "time", "timestamp", "breakers", "event", "replica", "replicas", "totals"]);
// One row per replica (`replicas` of the snapshot), then their `totals`.
const REPLICA_COLUMNS = [
  ["active_sessions", (v) => String(Math.round(v))],
  ["running_turns", (v) => String(Math.round(v))],
  ["turns_last_minute", (v) => String(Math.round(v))],
  ["ttft_p50_ms", formatMs],
  ["ttft_p95_ms", formatMs],
  ["event_loop_lag_ms", formatMs],
];

const ui = {
  status: byId("feed-status"),
  signOut: byId("sign-out"),
  signIn: byId("sign-in"),
  signInReason: byId("sign-in-reason"),
  signInForm: byId("sign-in-form"),
  tokenInput: byId("token-input"),
  dashboard: byId("dashboard"),
  breakerRows: byId("breaker-rows"),
  breakerNote: byId("breaker-note"),
  other: byId("other-metrics"),
  otherNote: byId("other-note"),
  log: byId("event-log"),
  logNote: byId("log-note"),
  updated: byId("updated"),
  replicaRows: byId("replica-rows"),
  chartSummary: byId("chart-summary"),
};

const notices = new Notices(byId("notices"));
const chart = new LineChart(byId("ttft-chart"), {
  series: [
    { key: "ttft_p50_ms", label: "p50", colorVar: "--accent" },
    { key: "ttft_p95_ms", label: "p95", colorVar: "--warn" },
  ],
  format: (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`),
});

const state = { feed: null, lastSnapshotAt: 0, breakers: new Map(), staleTimer: 0, retryTicker: 0 };

function start() {
  const token = takeToken();
  if (token) open(token);
  else showSignIn();
}

function open(token) {
  const claims = claimsOf(token);
  const left = msUntilExpiry(claims);
  if (left !== null && left <= 0) {
    clearToken();
    showSignIn("This token has expired. Paste a new one.");
    return;
  }
  if (claims && !hasRole(claims, "ops")) {
    notices.show("role", "warn", "This token has no ops role; the gateway will probably refuse the feed.");
  }
  ui.signIn.hidden = true;
  ui.dashboard.hidden = false;
  ui.signOut.hidden = false;
  state.feed?.stop();
  state.feed = followFeed(FEED, { token, onEvent, onStatus });
  clearInterval(state.staleTimer);
  state.staleTimer = setInterval(checkStale, 1000);
}

function showSignIn(reason) {
  state.feed?.stop();
  state.feed = null;
  ui.dashboard.hidden = true;
  ui.signOut.hidden = true;
  ui.signIn.hidden = false;
  ui.signInReason.textContent = reason || "Paste an access token with the ops role.";
  ui.signInReason.classList.toggle("error-text", Boolean(reason));
  ui.tokenInput.focus();
  setStatus("signed_out", "Signed out");
}

ui.signInForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = ui.tokenInput.value.trim().replace(/^Bearer\s+/i, "");
  if (token.split(".").length !== 3) {
    ui.signInReason.textContent = "That does not look like a token (a JWT has three dot-separated parts).";
    ui.signInReason.classList.add("error-text");
    return;
  }
  saveToken(token);
  ui.tokenInput.value = "";
  open(token);
});

ui.signOut.addEventListener("click", () => {
  clearToken();
  notices.hide("feed");
  showSignIn();
});

// ------------------------------------------------------------------ feed status

function onStatus({ state: feedState, error, retryAt }) {
  clearInterval(state.retryTicker);
  if (feedState === "open") {
    notices.hide("feed");
    setStatus("open", "Live");
    return;
  }
  if (feedState === "connecting" || feedState === "reconnecting") {
    setStatus(feedState, feedState === "connecting" ? "Connecting…" : "Reconnecting…");
    return;
  }
  if (feedState === "failed") {
    const message = error.status === 403
      ? "This token may not read the ops feed (it needs the ops role)."
      : "The gateway did not accept this token (401). Paste a new one.";
    if (error.status === 401) {
      clearToken();
      showSignIn(message);
    } else {
      notices.show("feed", "error", message, { action: { label: "Use another token", run: () => showSignIn() } });
      setStatus("failed", "Refused");
    }
    return;
  }
  // waiting for a retry
  const what = error.status === 404
    ? "This gateway has no ops feed yet (GET /v1/ops/events answered 404)."
    : error.status
      ? `The ops feed answered ${error.status}: ${error.message}.`
      : `The ops feed is unreachable: ${error.message}.`;
  document.body.dataset.feed = error.status === 404 ? "missing" : "down";
  const tick = () => {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    notices.show("feed", error.status === 404 ? "info" : "warn", `${what} Trying again in ${seconds} s.`, {
      action: { label: "Retry now", run: () => state.feed?.now() },
    });
  };
  tick();
  state.retryTicker = setInterval(tick, 1000);
  setStatus(error.status === 404 ? "failed" : "waiting", error.status === 404 ? "No feed" : "Reconnecting");
}

function setStatus(feedState, text) {
  ui.status.dataset.state = feedState;
  ui.status.textContent = text;
}

function checkStale() {
  if (!state.lastSnapshotAt || ui.status.dataset.state !== "open") return;
  const age = Date.now() - state.lastSnapshotAt;
  if (age > STALE_AFTER_MS) setStatus("open", `Live · no update for ${Math.round(age / 1000)} s`);
}

// ------------------------------------------------------------------ feed events

function onEvent({ event, data }) {
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return;
  }
  if (!body || typeof body !== "object") return;
  const name = body.type || event;
  if (/breaker/i.test(name) && !isSnapshot(body)) {
    onBreakerChange(body);
    return;
  }
  if (isSnapshot(body) || name === "message" || /snapshot|metrics|stats/i.test(name)) {
    onSnapshot(body);
    return;
  }
  logEvent(name, summarize(body));
}

function isSnapshot(body) {
  return Object.keys(TILES).some((k) => k in body) || "breakers" in body;
}

function onSnapshot(local) {
  // The tiles and the chart show the whole gateway: every replica's totals where sent.
  const snap = local.totals && typeof local.totals === "object" ? { ...local, ...local.totals } : local;
  renderReplicas(local);
  const now = Date.now();
  state.lastSnapshotAt = now;
  document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
  for (const [key, format] of Object.entries(TILES)) {
    const value = snap[key];
    const tile = document.querySelector(`.tile[data-key="${key}"]`);
    const node = byId(`tile-${key}`);
    const present = typeof value === "number" && Number.isFinite(value);
    node.textContent = present ? format(value) : "—";
    tile.classList.toggle("missing", !present);
    tile.title = present ? "" : "Not reported by this gateway";
  }
  tileTone("error_rate", snap.error_rate, [0.01, 0.05]);
  tileTone("ttft_p95_ms", snap.ttft_p95_ms, [1000, 2500]);
  chart.add(now, { ttft_p50_ms: snap.ttft_p50_ms, ttft_p95_ms: snap.ttft_p95_ms });
  ui.chartSummary.textContent = `p50 ${formatMs(snap.ttft_p50_ms)}, p95 ${formatMs(snap.ttft_p95_ms)}`;
  if (snap.breakers && typeof snap.breakers === "object") {
    for (const [target, value] of Object.entries(snap.breakers)) state.breakers.set(target, normalizeBreaker(value));
    renderBreakers();
  }
  renderOther(snap);
  ui.updated.textContent = `Updated ${formatTime(new Date(now))}`;
  setStatus("open", "Live");
}

function renderReplicas(snap) {
  const rows = Array.isArray(snap.replicas) ? snap.replicas : [];
  const row = (name, figures, extra = {}) =>
    el(
      "tr",
      extra,
      el("th", { scope: "row", text: name }),
      ...REPLICA_COLUMNS.map(([key, format]) => {
        const v = figures[key];
        return el("td", { text: typeof v === "number" && Number.isFinite(v) ? format(v) : "—" });
      }),
    );
  const body = rows.map((r) => row(String(r.replica ?? "?"), r, { dataset: { replica: String(r.replica ?? "") } }));
  if (snap.totals && rows.length > 1) body.push(row(`All ${rows.length}`, snap.totals, { class: "totals" }));
  ui.replicaRows.replaceChildren(...body);
}

function tileTone(key, value, [warnAt, badAt]) {
  const tile = document.querySelector(`.tile[data-key="${key}"]`);
  const v = key === "error_rate" && value > 1 ? value / 100 : value;
  tile.dataset.tone = typeof v !== "number" ? "" : v >= badAt ? "bad" : v >= warnAt ? "warn" : "ok";
}

function onBreakerChange(body) {
  const target = body.target || body.name || body.key;
  const info = normalizeBreaker(body.state ?? body.to ?? body);
  if (target) {
    const before = state.breakers.get(target)?.state;
    state.breakers.set(target, info);
    renderBreakers();
    logEvent("breaker", `${target}: ${before ? `${label(before)} → ` : ""}${label(info.state)}`);
  } else {
    logEvent("breaker", summarize(body));
  }
}

function normalizeBreaker(value) {
  if (typeof value === "string") return { state: value.toLowerCase().replace("-", "_") };
  if (value && typeof value === "object") return { ...value, state: String(value.state ?? "unknown").toLowerCase().replace("-", "_") };
  return { state: "unknown" };
}

function label(s) {
  return { closed: "closed", open: "open", half_open: "half-open" }[s] || String(s).replace(/_/g, " ");
}

function renderBreakers() {
  const rows = [...state.breakers.entries()].sort(([a], [b]) => a.localeCompare(b));
  ui.breakerRows.replaceChildren(
    ...rows.map(([target, info]) =>
      el(
        "tr",
        { dataset: { state: info.state } },
        el("th", { scope: "row", class: "target", text: target }),
        el("td", {}, el("span", { class: `breaker-state ${info.state}`, text: label(info.state) })),
      ),
    ),
  );
  ui.breakerNote.hidden = rows.length > 0;
}

function renderOther(snap) {
  // Scalars as they are; an object of numbers (quota_rejections: {scope: n}) one row per key.
  const flat = Object.entries(snap).flatMap(([k, v]) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.entries(v).map(([sub, x]) => [`${k} · ${sub}`, x, k]) : [[k, v, k]],
  );
  const entries = flat
    .filter(([, v, top]) => !(top in TILES) && !HIDDEN_KEYS.has(top) && (typeof v === "number" || typeof v === "string"))
    .map(([k, v]) => [k, v]);
  ui.other.replaceChildren(
    ...entries.flatMap(([k, v]) => [el("dt", { text: k.replace(/_/g, " ") }), el("dd", { text: formatOther(k, v) })]),
  );
  ui.otherNote.hidden = entries.length > 0;
}

function formatOther(key, value) {
  if (typeof value !== "number") return value;
  if (key.endsWith("_ms")) return formatMs(value);
  if (key.endsWith("_rate") || key.endsWith("_ratio")) return `${(value <= 1 ? value * 100 : value).toFixed(1)} %`;
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(2);
}

function summarize(body) {
  return Object.entries(body)
    .filter(([, v]) => typeof v !== "object")
    .slice(0, 6)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

function logEvent(name, text) {
  ui.logNote.hidden = true;
  ui.log.prepend(el("li", {}, el("time", { text: formatTime(new Date()) }), " ", el("span", { class: "event-name", text: name }), " ", el("span", { text })));
  while (ui.log.childElementCount > LOG_MAX) ui.log.lastElementChild.remove();
}

start();
