// The `/v1/realtime` WebSocket with reconnects.
//
// Browsers cannot set headers on a WebSocket, so the token travels as the subprotocol
// `bearer.<jwt>` next to `coach.v1`, and the session to resume as `?session_id=`. A lost
// connection is retried with exponential backoff and jitter; a rejected token (4401) or origin
// (4403) is not retried. A ping every 20 s, and no answer to anything for 45 s, detects sockets
// that died without a close frame (a phone switching networks).

import { backoffDelay } from "./dom.js";

const SESSION_KEY = "coach.session";
const PING_EVERY_MS = 20000;
const SILENT_LIMIT_MS = 45000;
const STABLE_AFTER_MS = 5000;

/** What a close code means to the user, and whether to reconnect. */
export function describeClose(code, reason) {
  switch (code) {
    case 4401:
      return { retry: false, kind: "auth", message: "Your access token was not accepted or has expired. Paste a new one to continue." };
    case 4403:
      return { retry: false, kind: "forbidden", message: "This page's origin is not allowed to connect to the gateway." };
    case 4429:
      return { retry: true, minDelayMs: 5000, kind: "quota", message: "Too many open connections for your account (other tabs or devices?)." };
    case 1012:
      return { retry: true, kind: "restart", message: "The server is restarting." };
    case 1013:
      return { retry: true, minDelayMs: 2000, kind: "busy", message: "The server asked us to try again later." };
    case 1009:
      return { retry: true, kind: "too_big", message: "A message was too large for the server." };
    case 1008:
      return { retry: true, kind: "policy", message: reason ? `The server closed the connection: ${reason}.` : "The server closed the connection." };
    case 1011:
      return { retry: true, kind: "server_error", message: "The server hit an internal error." };
    default:
      return { retry: true, kind: "network", message: "The connection was lost." };
  }
}

export class RealtimeClient extends EventTarget {
  /** @param {{url: string, token: () => string | null}} options */
  constructor({ url, token }) {
    super();
    this.url = url;
    this.token = token;
    this.ws = null;
    this.state = "idle";
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.stableTimer = 0;
    this.lastHeard = 0;
    this.lastErrorCode = null;
    this.stopped = false;
    addEventListener("online", () => this.state === "waiting" && this.connectNow());
    addEventListener("offline", () => this.state === "waiting" && this.status("waiting", { message: "You are offline. Waiting for the network…" }));
  }

  get sessionId() {
    try {
      return sessionStorage.getItem(SESSION_KEY);
    } catch {
      return this._sessionId || null;
    }
  }

  set sessionId(value) {
    this._sessionId = value;
    try {
      if (value) sessionStorage.setItem(SESSION_KEY, value);
      else sessionStorage.removeItem(SESSION_KEY);
    } catch {
      /* storage disabled */
    }
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    this.attempt = 0;
    this.connectNow();
  }

  /** Close for good (sign-out); no reconnect. */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.drop(1000, "bye");
    this.status("idle", { message: "Not connected" });
  }

  send(event) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(event));
    return true;
  }

  sendBinary(buffer) {
    if (!this.isOpen) return false;
    this.ws.send(buffer);
    return true;
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    const token = this.token();
    if (!token) {
      this.status("signed_out", { message: "Signed out", kind: "auth" });
      return;
    }
    this.drop(1000, "reconnecting");
    const url = new URL(this.url, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.sessionId) url.searchParams.set("session_id", this.sessionId);
    this.status(this.attempt ? "reconnecting" : "connecting", { message: this.attempt ? "Reconnecting…" : "Connecting…" });
    let ws;
    try {
      ws = new WebSocket(url, ["coach.v1", `bearer.${token}`]);
    } catch (err) {
      this.scheduleRetry(describeClose(1006), 1006);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.lastErrorCode = null;
    ws.addEventListener("open", () => this.onOpen(ws));
    ws.addEventListener("message", (msg) => this.onMessage(ws, msg));
    ws.addEventListener("close", (ev) => this.onClose(ws, ev.code, ev.reason));
  }

  onOpen(ws) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.heartbeat(ws), PING_EVERY_MS);
    // Only a connection that stays up resets the backoff, so a server that accepts and then
    // drops at once is not hammered.
    clearTimeout(this.stableTimer);
    this.stableTimer = setTimeout(() => (this.attempt = 0), STABLE_AFTER_MS);
  }

  onMessage(ws, msg) {
    if (ws !== this.ws || typeof msg.data !== "string") return;
    this.lastHeard = Date.now();
    let event;
    try {
      event = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (event.type === "session.created") {
      this.sessionId = event.session_id;
      this.status("open", { message: "Connected", session: event });
    } else if (event.type === "error") {
      this.lastErrorCode = event.code;
      if (event.code === "session_not_found") this.sessionId = null;
    }
    this.dispatchEvent(new CustomEvent("event", { detail: event }));
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.stableTimer);
    if (this.stopped) return;
    const info = describeClose(code, reason);
    this.dispatchEvent(new CustomEvent("closed", { detail: { code, reason, ...info } }));
    if (!info.retry) {
      this.status(info.kind === "auth" ? "signed_out" : "failed", { ...info, code });
      return;
    }
    this.scheduleRetry(info, code);
  }

  scheduleRetry(info, code) {
    const delay = Math.max(info.minDelayMs || 0, backoffDelay(this.attempt));
    this.attempt += 1;
    const offline = navigator.onLine === false;
    const message = offline ? "You are offline. Waiting for the network…" : info.message;
    this.status("waiting", { ...info, code, message, retryAt: Date.now() + delay });
    this.retryTimer = setTimeout(() => this.connectNow(), delay);
  }

  heartbeat(ws) {
    if (ws !== this.ws) return;
    if (Date.now() - this.lastHeard > SILENT_LIMIT_MS) {
      // No close frame will come from a dead path; give up on this socket ourselves.
      this.onClose(ws, 1006, "no answer");
      try {
        ws.close(4000, "no answer");
      } catch {
        /* already closing */
      }
      return;
    }
    this.send({ type: "ping" });
  }

  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.stableTimer);
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try {
        ws.close(code, reason);
      } catch {
        /* already closed */
      }
    }
  }

  status(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, ...detail } }));
  }
}
