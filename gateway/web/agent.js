// The agent in the conversation (DESIGN.md, "Agent"): a compact line per tool the coach used
// (`response.tool_call` / `response.tool_result`) inside its reply, and a card per proposed
// change (`change.proposed`) with Accept / Reject, answered over the socket (`change.accept` /
// `change.reject`) and settled by `change.applied` / `change.rejected` from any tab. Pending
// changes made earlier are listed at sign-in (`GET /v1/changes?status=pending`).

import { getJson } from "./api.js";
import { el } from "./dom.js";
import { humanize } from "./panel.js";

const TOOL_LABELS = {
  get_progress: "your progress",
  list_sessions: "your sessions",
  get_assessments: "your assessments",
  search_drills: "the drill library",
  recommend_practice: "a practice plan",
  propose_focus_change: "a change of focuses",
  remember: "a note to remember",
};
const STATUS_TEXT = { applied: "Accepted", rejected: "Declined", expired: "Expired" };

/** A line in the coach's bubble for one tool call, updated when its result comes. */
export function showToolCall(turn, msg) {
  if (!turn.coachItem || turn.coachItem.querySelector(`[data-call-id="${CSS.escape(String(msg.call_id))}"]`)) return;
  const label = TOOL_LABELS[msg.name] ?? humanize(msg.name);
  const line = el("p", { class: "tool-line small", dataset: { callId: msg.call_id, state: "running" } }, el("span", { class: "tool-label", text: `Looking at ${label}…` }));
  const meta = turn.meta && turn.coachItem.contains(turn.meta) ? turn.meta : null;
  const body = turn.coachItem.querySelector(".bubble-text");
  turn.coachItem.insertBefore(line, body ?? meta);
}

export function showToolResult(turn, msg) {
  const line = turn.coachItem?.querySelector(`[data-call-id="${CSS.escape(String(msg.call_id))}"]`);
  if (!line) return;
  line.dataset.state = msg.ok ? "done" : "failed";
  const text = msg.summary || (msg.ok ? "done" : "could not be used");
  line.replaceChildren(el("span", { class: "tool-label", text: `${msg.ok ? "✓" : "✗"} ${text}` }));
}

export class ChangeCards {
  /** answer(changeId, accept) sends the answer; names maps focus ids to names. */
  constructor(list, names, answer) {
    this.list = list;
    this.names = names;
    this.answer = answer;
    this.cards = new Map(); // change id -> card element
  }

  async loadPending(token) {
    let body;
    try {
      body = await getJson("/v1/changes?status=pending", token);
    } catch {
      return; // the conversation still works; proposals arrive live
    }
    for (const change of Array.isArray(body?.changes) ? body.changes : []) this.propose(change);
  }

  propose(change) {
    if (!change?.id || this.cards.has(change.id)) return;
    const accept = el("button", { type: "button", class: "primary", text: "Accept", onclick: () => this.send(change.id, true) });
    const reject = el("button", { type: "button", class: "ghost", text: "Reject", onclick: () => this.send(change.id, false) });
    const status = el("p", { class: "muted small change-status", role: "status" });
    const card = el(
      "li",
      { class: "msg change", dataset: { changeId: change.id, status: change.status || "pending" } },
      el("p", { class: "turn-meta", text: "Your coach suggests a change" }),
      el("p", { class: "bubble-text", text: this.describe(change) }),
      el("div", { class: "change-actions" }, accept, reject),
      status,
    );
    this.cards.set(change.id, card);
    this.list.append(card);
    card.scrollIntoView({ block: "nearest" });
  }

  describe(change) {
    const payload = change.payload || {};
    if (change.kind === "focus_change") {
      const focuses = (payload.focus_ids || []).map((id) => this.names.get(id)).join(", ") || "no focus";
      return `Work on: ${focuses}.${payload.reason ? ` ${payload.reason}` : ""}`;
    }
    if (change.kind === "memory") return `Remember: “${payload.text ?? ""}”`;
    return humanize(change.kind);
  }

  send(changeId, accept) {
    const card = this.cards.get(changeId);
    if (!card) return;
    for (const button of card.querySelectorAll("button")) button.disabled = true;
    card.querySelector(".change-status").textContent = accept ? "Accepting…" : "Declining…";
    if (!this.answer(changeId, accept)) this.failed(changeId, "Not connected; try again in a moment.");
  }

  /** `change.applied` / `change.rejected`, from this tab or another. */
  settle(change) {
    const card = this.cards.get(change?.id);
    if (!card) return;
    card.dataset.status = change.status;
    for (const button of card.querySelectorAll("button")) button.remove();
    card.querySelector(".change-status").textContent = STATUS_TEXT[change.status] ?? humanize(change.status);
  }

  /** The answer was refused (expired, decided elsewhere, no longer valid). */
  failed(changeId, message) {
    const card = this.cards.get(changeId);
    if (!card) return;
    for (const button of card.querySelectorAll("button")) button.disabled = false;
    card.querySelector(".change-status").textContent = message;
  }
}
