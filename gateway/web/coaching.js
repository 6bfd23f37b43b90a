// The coaching cards of the side panel: the focus picker (`GET /v1/focuses`, `PUT
// /v1/progress/focuses`), today's practice (`GET /v1/recommendations/practice`), feedback on the
// session (`POST /v1/feedback`), both with drills from `GET /v1/drills`, and insights (`GET
// /v1/insights`, `POST /v1/insights/{type}`, live `insight.created`). Each card stands alone: one
// that fails says so in words and the others carry on; the insights card hides itself where the
// gateway has no insights (404).

import { ApiFailure, getJson, sendJson } from "./api.js";
import { el } from "./dom.js";
import { humanize } from "./panel.js";

const MAX_FOCUSES = 3;
const TIP_TYPE = "performance_tip";
const MAX_INSIGHTS = 8;
// How each answer's origin reads to the user: quiet, and never like a failure.
const PRACTICE_SOURCE = { model: "Suggested for you", cache: "Suggested for you today", fallback: "Default plan" };
const INSIGHT_SOURCE = { model: "", cache: "", fallback: "General tip" };
const FEEDBACK_SOURCE = { model: "", cache: "Given earlier", fallback: "General advice" };

function failureText(err, what) {
  if (err instanceof ApiFailure) {
    if (err.status === 404 || err.status === 503) return `${what} is not available on this gateway.`;
    if (err.status === 401) return `${what} needs a valid token.`;
    if (err.status === 429) return `${what}: you reached a usage limit; try again later.`;
    if (err.status === 0) return `${what} could not be loaded (network).`;
    return `${what}: ${err.message}.`;
  }
  return `${what} could not be loaded.`;
}

/** Focus names by id, shared by the cards (filled from `GET /v1/focuses`). */
export class FocusNames {
  constructor() {
    this.names = new Map();
  }

  set(id, name) {
    if (id && name) this.names.set(String(id), name);
  }

  get(id) {
    return this.names.get(String(id)) || humanize(id);
  }
}

export class FocusPicker {
  /** onSaved(focusIds) runs after the gateway accepted a new choice. */
  constructor({ form, options, status, save }, names, onSaved) {
    this.form = form;
    this.options = options;
    this.status = status;
    this.save = save;
    this.names = names;
    this.onSaved = onSaved;
    this.token = null;
    this.order = []; // the chosen ids in the order they were picked
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  async load(token) {
    this.token = token;
    let focuses;
    let progress;
    try {
      [focuses, progress] = await Promise.all([getJson("/v1/focuses", token), getJson("/v1/progress", token)]);
    } catch (err) {
      this.options.replaceChildren();
      this.save.disabled = true;
      this.say(failureText(err, "Choosing focuses"), "error");
      return;
    }
    const catalog = Array.isArray(focuses?.focuses) ? focuses.focuses : [];
    const rows = Array.isArray(progress?.data) ? progress.data : [];
    for (const f of catalog) this.names.set(f.id, f.name);
    this.order = rows.filter((r) => r.active).map((r) => String(r.focus_id));
    this.options.replaceChildren(...catalog.map((f) => this.option(f)));
    this.save.disabled = !catalog.length;
    this.limit();
    this.say(this.order.length ? `Now: ${this.order.map((id) => this.names.get(id)).join(", ")}.` : `Pick up to ${MAX_FOCUSES}.`);
  }

  option(focus) {
    const id = String(focus.id);
    const box = el("input", { type: "checkbox", name: "focus", value: id, id: `focus-${id}`, checked: this.order.includes(id) });
    box.addEventListener("change", () => {
      this.order = this.order.filter((f) => f !== id);
      if (box.checked) this.order.push(id);
      this.limit();
      this.say(this.order.length >= MAX_FOCUSES ? `${MAX_FOCUSES} chosen, the most you can pick. Not saved yet.` : "Not saved yet.");
    });
    return el(
      "li",
      { class: "focus-option" },
      box,
      el("label", { for: `focus-${id}` }, el("span", { class: "focus-name", text: focus.name || humanize(id) }), focus.description ? el("span", { class: "muted small focus-desc", text: focus.description }) : null),
    );
  }

  /** With three chosen, the others cannot be ticked (the gateway refuses more anyway). */
  limit() {
    const full = this.order.length >= MAX_FOCUSES;
    for (const box of this.options.querySelectorAll("input[type=checkbox]")) box.disabled = full && !box.checked;
  }

  async submit() {
    if (!this.token) return;
    const chosen = this.order.slice();
    this.save.disabled = true;
    this.say("Saving…");
    try {
      const body = await sendJson("PUT", "/v1/progress/focuses", this.token, { focus_ids: chosen });
      const saved = Array.isArray(body?.focus_ids) ? body.focus_ids.map(String) : chosen;
      this.order = saved;
      this.say(saved.length ? `Saved: ${saved.map((id) => this.names.get(id)).join(", ")}.` : "Saved: no focus chosen.", "ok");
      this.onSaved?.(saved);
    } catch (err) {
      this.say(err instanceof ApiFailure && err.status >= 400 && err.status < 500 && err.status !== 401 ? `Not saved: ${err.message}.` : `Not saved. ${failureText(err, "Choosing focuses")}`, "error");
    } finally {
      this.save.disabled = false;
    }
  }

  say(text, tone = "") {
    this.status.textContent = text;
    this.status.dataset.tone = tone;
  }
}

export class PracticeCard {
  constructor({ focusLine, reason, drills, source, note }, names, catalog) {
    this.focusLine = focusLine;
    this.reason = reason;
    this.drills = drills;
    this.source = source;
    this.note = note;
    this.names = names;
    this.catalog = catalog; // a DrillCatalog, shared with the feedback card
  }

  async load(token) {
    this.note.hidden = false;
    this.note.textContent = "Loading…";
    try {
      const [body] = await Promise.all([getJson("/v1/recommendations/practice", token), this.catalog.load(token)]);
      this.render(body?.recommendation);
    } catch (err) {
      this.clear();
      this.note.textContent = failureText(err, "Today's practice");
    }
  }

  clear() {
    this.focusLine.textContent = "";
    this.reason.textContent = "";
    this.drills.replaceChildren();
    this.source.textContent = "";
  }

  render(rec) {
    if (!rec || typeof rec !== "object") {
      this.clear();
      this.note.textContent = "No practice suggestion yet.";
      return;
    }
    this.note.hidden = true;
    const minutes = typeof rec.minutes === "number" ? ` · ${rec.minutes} min` : "";
    this.focusLine.textContent = `${this.names.get(rec.focus_id)}${minutes}`;
    this.reason.textContent = rec.reason || "";
    const ids = Array.isArray(rec.drill_ids) ? rec.drill_ids : [];
    this.drills.replaceChildren(...ids.map((id) => this.catalog.item(id)));
    this.source.textContent = PRACTICE_SOURCE[rec.source] ?? "";
    this.source.dataset.source = rec.source || "";
  }
}

/** Feedback on the current session (`POST /v1/feedback`): strengths, what to work on, tips, and
 * the drills for it, from what the assessments beside it observed. */
export class FeedbackCard {
  /** observe() returns the session's observations: `{session_id, assessed: {focus: {...}}}`. */
  constructor({ button, body, strengths, weaknesses, tips, drills, source, note }, catalog, observe) {
    Object.assign(this, { button, body, strengths, weaknesses, tips, drills, source, note, catalog, observe });
    this.token = null;
    button.addEventListener("click", () => this.ask());
  }

  reset(token) {
    this.token = token;
    this.body.hidden = true;
    this.source.textContent = "";
    this.say("Practise a few turns, then ask for feedback on this session.");
  }

  async ask() {
    const observations = this.observe();
    if (!this.token || !observations?.session_id) return;
    this.button.disabled = true;
    this.say("Asking your coach…");
    try {
      const request = { subject: { kind: "session", id: String(observations.session_id) }, observations };
      const [answer] = await Promise.all([sendJson("POST", "/v1/feedback", this.token, request), this.catalog.load(this.token)]);
      this.render(answer?.feedback);
    } catch (err) {
      this.say(failureText(err, "Feedback"), "error");
    } finally {
      this.button.disabled = false;
    }
  }

  render(feedback) {
    if (!feedback || typeof feedback !== "object") {
      this.say("No feedback came back; try again in a moment.", "error");
      return;
    }
    const lines = (list) => (Array.isArray(list) ? list : []).map((text) => el("li", { text: String(text) }));
    this.strengths.replaceChildren(...lines(feedback.strengths));
    this.weaknesses.replaceChildren(...lines(feedback.weaknesses));
    this.tips.replaceChildren(...lines(feedback.tips));
    const ids = Array.isArray(feedback.drill_ids) ? feedback.drill_ids : [];
    this.drills.replaceChildren(...ids.map((id) => this.catalog.item(id)));
    this.source.textContent = FEEDBACK_SOURCE[feedback.source] ?? "";
    this.source.dataset.source = feedback.source || "";
    this.body.hidden = false;
    this.say("");
  }

  say(text, tone = "") {
    this.note.hidden = !text;
    this.note.textContent = text;
    this.note.dataset.tone = tone;
  }
}

export class InsightsCard {
  constructor({ card, list, note, button }) {
    this.card = card;
    this.list = list;
    this.note = note;
    this.button = button;
    this.token = null;
    this.seen = new Set();
    button.addEventListener("click", () => this.newTip());
  }

  async load(token) {
    this.token = token;
    let body;
    try {
      body = await getJson("/v1/insights", token);
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 404) {
        this.card.hidden = true; // this gateway has no insights (yet): say nothing
        return;
      }
      this.card.hidden = false;
      this.note.hidden = false;
      this.note.textContent = failureText(err, "Insights");
      return;
    }
    this.card.hidden = false;
    this.seen.clear();
    this.list.replaceChildren();
    const latest = (Array.isArray(body?.insights) ? body.insights : []).map((row) => row?.latest).filter(Boolean);
    latest.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
    for (const insight of latest) this.add(insight, { live: false });
    this.showNote();
  }

  async newTip() {
    if (!this.token) return;
    this.button.disabled = true;
    this.note.hidden = false;
    this.note.textContent = "Asking your coach…";
    try {
      const body = await sendJson("POST", `/v1/insights/${TIP_TYPE}?refresh=true`, this.token);
      this.add(body?.insight, { live: true });
      this.showNote();
    } catch (err) {
      if (err instanceof ApiFailure && err.status === 404) this.card.hidden = true;
      else this.note.textContent = failureText(err, "A new tip");
    } finally {
      this.button.disabled = false;
    }
  }

  /** Show an insight at the top; a newer one of the same type replaces the older. */
  add(insight, { live }) {
    if (!insight || typeof insight !== "object" || !insight.text) return;
    const key = String(insight.id ?? `${insight.type}|${insight.created_at}`);
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.list.querySelector(`li[data-type="${CSS.escape(String(insight.type))}"]`)?.remove();
    const origin = INSIGHT_SOURCE[insight.source] ?? "";
    const item = el(
      "li",
      { class: `insight${live ? " fresh" : ""}`, dataset: { type: insight.type, source: insight.source || "" } },
      el("p", { class: "insight-type small", text: humanize(insight.type) }),
      el("p", { class: "insight-text", text: insight.text }),
      origin ? el("p", { class: "muted small", text: origin }) : null,
    );
    this.list.prepend(item);
    while (this.list.childElementCount > MAX_INSIGHTS) this.list.lastElementChild.remove();
    this.card.hidden = false;
    this.showNote();
  }

  showNote() {
    const empty = this.list.childElementCount === 0;
    this.note.hidden = !empty;
    if (empty) this.note.textContent = "No insights yet. Ask for a tip, or practise and they will come.";
  }
}
