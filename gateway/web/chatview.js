// The conversation as DOM: one user bubble and one coach bubble per turn, the coach's text
// growing as deltas arrive, and a quiet line of timings under each finished reply.

import { el, formatMs } from "./dom.js";

const STICK_PX = 96; // follow the stream only while the reader is already near the bottom

export class Turn {
  constructor(id, { text = "", voice = false } = {}) {
    this.id = id;
    this.userText = text;
    this.voice = voice;
    this.state = "waiting"; // waiting -> streaming -> done | failed | stopped
    this.sentAt = performance.now();
    this.firstDeltaAt = null;
    this.firstAudioAt = null;
    this.timings = null;
    this.userItem = null;
    this.userTextNode = null;
    this.coachItem = null;
    this.coachText = null;
    this.meta = null;
  }

  get open() {
    return this.state === "waiting" || this.state === "streaming";
  }
}

export class ChatView {
  constructor(list, emptyHint) {
    this.list = list;
    this.emptyHint = emptyHint;
    this.scroller = list;
  }

  /** A turn at the end of the conversation, or with `earlier`, at its start (a stored turn). */
  addTurn(turn, userLabel, { earlier = false } = {}) {
    const follow = !earlier && this.nearBottom();
    this.emptyHint.hidden = true;
    turn.userTextNode = el("p", { class: "bubble-text", text: userLabel ?? turn.userText });
    turn.userItem = el(
      "li",
      { class: `msg user${turn.voice ? " voice" : ""}`, dataset: { turn: turn.id } },
      el("span", { class: "visually-hidden", text: "You said:" }),
      turn.userTextNode,
    );
    turn.coachText = document.createTextNode("");
    const body = el("p", { class: "bubble-text" }, turn.coachText);
    turn.meta = el("p", { class: "turn-meta" });
    turn.coachItem = el(
      "li",
      { class: "msg coach waiting", dataset: { turn: turn.id, state: "waiting" } },
      el("span", { class: "visually-hidden", text: "Coach:" }),
      body,
      turn.meta,
    );
    if (earlier) this.list.prepend(turn.userItem, turn.coachItem);
    else this.list.append(turn.userItem, turn.coachItem);
    if (follow) this.scrollToEnd();
  }

  setUserText(turn, text, note) {
    turn.userText = text;
    turn.userTextNode.textContent = text;
    turn.userItem.classList.remove("pending");
    if (note) turn.userItem.append(el("p", { class: "turn-meta", text: note }));
  }

  setUserPending(turn, label) {
    turn.userTextNode.textContent = label;
    turn.userItem.classList.add("pending");
  }

  setState(turn, state) {
    turn.state = state;
    turn.coachItem.dataset.state = state;
    turn.coachItem.classList.toggle("waiting", state === "waiting");
    turn.coachItem.classList.toggle("streaming", state === "streaming");
  }

  appendDelta(turn, text) {
    const follow = this.nearBottom();
    if (turn.state === "waiting") this.setState(turn, "streaming");
    turn.coachText.appendData(text);
    if (follow) this.scrollToEnd();
  }

  /** Replace the streamed text with the final text (they normally agree). */
  finish(turn, finalText, state) {
    if (typeof finalText === "string" && finalText && finalText !== turn.coachText.data) {
      turn.coachText.data = finalText;
    }
    this.setState(turn, state);
  }

  showTimings(turn) {
    const t = turn.timings || {};
    const parts = [];
    if (typeof t.ttft_ms === "number") parts.push(el("span", { class: "ttft", text: `TTFT ${formatMs(t.ttft_ms)}` }));
    if (typeof t.first_audio_ms === "number") parts.push(el("span", { class: "first-audio", text: `first audio ${formatMs(t.first_audio_ms)}` }));
    else if (turn.firstAudioAt !== null) {
      parts.push(el("span", { class: "first-audio", text: `first audio ${formatMs(turn.firstAudioAt - turn.sentAt)}` }));
    }
    if (turn.model) parts.push(el("span", { class: "model", text: turn.model }));
    if (turn.fallbacks) parts.push(el("span", { class: "fallback", text: "via fallback" }));
    turn.meta.replaceChildren(...joinDots(parts));
    turn.meta.title = describeTimings(turn);
  }

  /** A note in the coach bubble (stopped, failed, not sent) with an optional action button. */
  note(turn, text, { kind = "info", action } = {}) {
    turn.coachItem.querySelector(".turn-note")?.remove();
    const note = el("p", { class: `turn-note ${kind}` }, el("span", { text }));
    if (action) {
      note.append(" ", el("button", { type: "button", class: "link-button", onclick: action.run, text: action.label }));
    }
    turn.coachItem.append(note);
    if (!turn.coachText.data) turn.coachItem.classList.add("empty");
    return note;
  }

  addFeedback(text, metric) {
    const follow = this.nearBottom();
    this.emptyHint.hidden = true;
    this.list.append(
      el(
        "li",
        { class: "msg feedback" },
        el("p", { class: "turn-meta", text: metric ? `Live feedback · ${metric}` : "Live feedback" }),
        el("p", { class: "bubble-text", text }),
      ),
    );
    if (follow) this.scrollToEnd();
  }

  remove(turn) {
    turn.userItem?.remove();
    turn.coachItem?.remove();
    this.emptyHint.hidden = this.list.childElementCount > 0;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}

function joinDots(parts) {
  const out = [];
  parts.forEach((part, i) => {
    if (i) out.push(el("span", { class: "dot", "aria-hidden": "true", text: " · " }));
    out.push(part);
  });
  return out;
}

function describeTimings(turn) {
  const t = turn.timings || {};
  const lines = [];
  if (typeof t.ttft_ms === "number") lines.push(`Time to first token (gateway): ${formatMs(t.ttft_ms)}`);
  if (typeof t.upstream_ttft_ms === "number") lines.push(`Upstream first token: ${formatMs(t.upstream_ttft_ms)}`);
  if (typeof t.total_ms === "number") lines.push(`Whole reply: ${formatMs(t.total_ms)}`);
  if (typeof t.first_audio_ms === "number") lines.push(`First audio (gateway): ${formatMs(t.first_audio_ms)}`);
  if (turn.firstDeltaAt !== null) lines.push(`First token seen here: ${formatMs(turn.firstDeltaAt - turn.sentAt)}`);
  if (turn.firstAudioAt !== null) lines.push(`First audio heard here: ${formatMs(turn.firstAudioAt - turn.sentAt)}`);
  if (turn.provider) lines.push(`Provider: ${turn.provider}`);
  return lines.join("\n");
}
