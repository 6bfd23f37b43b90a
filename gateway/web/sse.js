// Server-sent events over fetch(), so the request can carry `Authorization: Bearer` (EventSource
// cannot set headers) and a 401/404 is seen as a status, not as an endless silent retry.

import { backoffDelay } from "./dom.js";

export class FeedError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Parse an SSE byte stream; calls onEvent({event, data, id}) per dispatched event. */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) onEvent({ event: event.event, data: event.data.join("\n"), id: event.id });
        event = { event: "message", data: [], id: event.id };
        continue;
      }
      if (line.startsWith(":")) continue; // comment / keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.event = value || "message";
      else if (field === "data") event.data.push(value);
      else if (field === "id") event.id = value;
    }
  }
}

/**
 * Follow an SSE endpoint until stop(): reconnect with backoff after network errors and clean
 * ends; report HTTP errors through onStatus and retry those slowly (a 404 may become a 200 once
 * the feature is deployed; a 401/403 needs a new token, so it is not retried).
 */
export function followFeed(url, { token, onEvent, onStatus }) {
  let controller = null;
  let timer = 0;
  let attempt = 0;
  let lastId = null;
  let stopped = false;

  async function run() {
    controller = new AbortController();
    onStatus({ state: attempt ? "reconnecting" : "connecting" });
    try {
      const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(url, { headers, cache: "no-store", signal: controller.signal });
      if (!response.ok) throw new FeedError(response.status, await errorMessage(response));
      onStatus({ state: "open" });
      attempt = 0;
      await readEvents(response.body, (event) => {
        if (event.id) lastId = event.id;
        onEvent(event);
      });
      if (!stopped) retry(new FeedError(0, "the feed ended"));
    } catch (err) {
      if (stopped || err?.name === "AbortError") return;
      retry(err instanceof FeedError ? err : new FeedError(0, "the gateway could not be reached"));
    }
  }

  function retry(err) {
    if (err.status === 401 || err.status === 403) {
      onStatus({ state: "failed", error: err });
      return;
    }
    const delay = err.status === 404 ? 15000 : backoffDelay(attempt, { baseMs: 1000, capMs: 30000 });
    attempt += 1;
    onStatus({ state: "waiting", error: err, retryAt: Date.now() + delay });
    timer = setTimeout(run, delay);
  }

  run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      controller?.abort();
    },
    now() {
      clearTimeout(timer);
      controller?.abort();
      stopped = false;
      run();
    },
  };
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body?.error?.message || response.statusText;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}
