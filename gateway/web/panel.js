// The side panel: focus levels from `GET /v1/progress`, assessments from
// `GET /v1/sessions/{id}/assessments` and live from `assessment.created`. Both endpoints need a
// database; without one (404, 503) the panel says so and keeps taking live events.
// Levels count only turns that show progress, so a focus assessed here may have no level yet:
// the levels list still names it with its assessments, so the two cards never contradict.

import { ApiFailure, getJson } from "./api.js";
import { el } from "./dom.js";

const BANDS = { novice: "Novice", developing: "Developing", mastery: "Mastery" };
const MAX_SHOWN = 30;
// An assessment's category is a coaching label, not a status: "error" means the turn mainly
// shows something to work on.
const CATEGORIES = {
  error: { text: "needs work", cls: "tag-work", title: "This mainly shows something to work on" },
  progress: { text: "progress", cls: "tag-progress", title: "This shows skill you are building" },
};

export class ProgressPanel {
  constructor({ progressList, progressNote, assessmentList, assessmentNote }) {
    this.progressList = progressList;
    this.progressNote = progressNote;
    this.assessmentList = assessmentList;
    this.assessmentNote = assessmentNote;
    this.focusNames = new Map();
    this.seen = new Set();
    this.assessed = new Map(); // focus id -> {count, last score} of the assessments shown
    this.items = null; // the last progress rows, re-rendered as assessments arrive
    this.refreshTimer = 0;
  }

  reset() {
    this.seen.clear();
    this.assessed.clear();
    this.assessmentList.replaceChildren();
    this.assessmentNote.hidden = false;
  }

  async loadProgress(token) {
    try {
      const body = await getJson("/v1/progress", token);
      this.renderProgress(listOf(body));
    } catch (err) {
      this.progressNote.hidden = false;
      this.progressNote.textContent = unavailable(err, "Focus levels");
    }
  }

  /** Reload progress soon (coalescing a burst of assessments into one request). */
  refreshSoon(token) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.loadProgress(token), 800);
  }

  async loadAssessments(token, sessionId) {
    if (!sessionId) return;
    try {
      const body = await getJson(`/v1/sessions/${encodeURIComponent(sessionId)}/assessments?limit=20`, token);
      for (const row of listOf(body).slice().reverse()) this.addAssessment(row, { live: false });
    } catch (err) {
      if (!this.seen.size) this.assessmentNote.textContent = unavailable(err, "Earlier assessments");
    }
  }

  renderProgress(items) {
    this.items = items;
    this.progressList.replaceChildren();
    const listed = new Set();
    for (const item of items) {
      const id = item.focus_id ?? item.id ?? item.focus ?? item.name;
      const name = item.name || humanize(id);
      if (id) {
        this.focusNames.set(String(id), name);
        listed.add(String(id));
      }
      this.progressList.append(progressItem(name, item, this.assessed.get(String(id))));
    }
    // Focuses assessed in this session that have no level yet (only "needs work" so far).
    for (const [id, seen] of this.assessed) {
      if (listed.has(id)) continue;
      this.progressList.append(progressItem(this.focusNames.get(id) || humanize(id), { focus_id: id, level: null }, seen));
    }
    const empty = this.progressList.childElementCount === 0;
    this.progressNote.hidden = !empty;
    if (empty) this.progressNote.textContent = "No focus areas yet. Pick some above; levels appear once your turns are assessed.";
  }

  addAssessment(row, { live }) {
    if (!row || typeof row !== "object") return;
    const key = row.id ?? `${row.created_at}|${row.focus_id}|${row.kind}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.assessmentNote.hidden = true;
    this.noteAssessed(row);
    const item = assessmentItem(row, this.focusNames);
    if (live) item.classList.add("fresh");
    this.assessmentList.prepend(item);
    while (this.assessmentList.childElementCount > MAX_SHOWN) this.assessmentList.lastElementChild.remove();
  }

  /** Count what the assessments card shows per focus, for the levels list. */
  noteAssessed(row) {
    if (row.focus_id === undefined || row.focus_id === null) return;
    const id = String(row.focus_id);
    const seen = this.assessed.get(id) || { count: 0, score: null, at: "" };
    seen.count += 1;
    const at = String(row.created_at ?? "");
    if (typeof row.score === "number" && at >= seen.at) {
      seen.score = row.score;
      seen.at = at;
    }
    this.assessed.set(id, seen);
    if (this.items) this.renderProgress(this.items);
  }
}

function listOf(body) {
  if (Array.isArray(body)) return body;
  for (const key of ["data", "focuses", "progress", "assessments", "items"]) {
    if (Array.isArray(body?.[key])) return body[key];
  }
  return [];
}

function unavailable(err, what) {
  if (err instanceof ApiFailure) {
    if (err.status === 404 || err.status === 503) return `${what} are not available on this gateway.`;
    if (err.status === 401) return `${what} need a valid token.`;
    if (err.status === 0) return `${what} could not be loaded (network).`;
    return `${what} could not be loaded: ${err.message}`;
  }
  return `${what} could not be loaded.`;
}

export function humanize(id) {
  const text = String(id ?? "").replace(/[_-]+/g, " ").trim();
  return text ? text[0].toUpperCase() + text.slice(1) : "General";
}

function progressItem(name, item, seen) {
  const level = typeof item.level === "number" ? item.level : null;
  const band = BANDS[item.band] || (item.band ? humanize(item.band) : null);
  const label = level !== null ? `level ${level}${band ? ` · ${band}` : ""}` : seen ? unlevelled(seen) : "not assessed yet";
  const meter = el("meter", { min: 0, max: 10, low: 3.5, high: 7.5, optimum: 10, value: level ?? 0, "aria-label": `${name}: ${label}` });
  return el(
    "li",
    { class: `progress-item${item.active === false ? " inactive" : ""}`, dataset: { focusId: item.focus_id ?? "" } },
    el("div", { class: "progress-head" }, el("span", { class: "progress-name", text: name }), el("span", { class: "muted small", text: label })),
    meter,
  );
}

/** A focus assessed without a level: levels come from "progress" turns only. */
function unlevelled(seen) {
  const score = typeof seen.score === "number" ? ` · last ${seen.score}/10` : "";
  return `${seen.count} assessed${score} · no level yet`;
}

function categoryTag(category) {
  if (!category) return null;
  const known = CATEGORIES[category];
  const text = known?.text ?? humanize(category).toLowerCase();
  return el("span", { class: `tag ${known?.cls ?? "tag-progress"}`, title: known?.title, text });
}

function assessmentItem(row, focusNames) {
  const focus = focusNames.get(String(row.focus_id)) || humanize(row.focus_id ?? row.focus);
  const score = typeof row.score === "number" ? `${row.score}/10` : null;
  const kind = { interaction: "this turn", multi_turn: "recent turns", session_summary: "session" }[row.kind] || row.kind;
  const head = el(
    "div",
    { class: "assessment-head" },
    el("span", { class: "assessment-focus", text: focus }),
    categoryTag(row.category),
    score ? el("span", { class: "score", text: score }) : null,
  );
  const errors = Array.isArray(row.errors) ? row.errors.slice(0, 4) : [];
  const time = row.created_at ? new Date(row.created_at) : null;
  return el(
    "li",
    { class: "assessment" },
    head,
    row.explanation ? el("p", { class: "assessment-text", text: row.explanation }) : null,
    errors.length
      ? el("ul", { class: "assessment-errors" }, errors.map((e) => el("li", { text: e?.suggestion ? `${e.message} — ${e.suggestion}` : String(e?.message ?? e) })))
      : null,
    el("p", { class: "muted small", text: [kind, time && !Number.isNaN(time.getTime()) ? time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : null].filter(Boolean).join(" · ") }),
  );
}
