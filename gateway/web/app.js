// The chat page: wires the realtime client, the conversation view, voice in and out, and the
// progress panel. Protocol: DESIGN.md, "Realtime WebSocket".

import { ChangeCards, showToolCall, showToolResult } from "./agent.js";
import { getJson } from "./api.js";
import { ChatView, Turn } from "./chatview.js";
import { FeedbackCard, FocusNames, FocusPicker, InsightsCard, PracticeCard } from "./coaching.js";
import { byId, formatMs, randomId } from "./dom.js";
import { DrillCatalog } from "./drills.js";
import { Notices } from "./notices.js";
import { ProgressPanel } from "./panel.js";
import { AudioPlayer } from "./player.js";
import { RealtimeClient } from "./realtime.js";
import { MicRecorder, recorderSupport } from "./recorder.js";
import { HANDS_FREE_LABELS, HandsFree } from "./handsfree.js";
import { claimsOf, clearToken, hasRole, msUntilExpiry, saveToken, takeToken } from "./token.js";

const VOICE_PREF = "coach.voiceReplies";
const CANCEL_GRACE_MS = 2500; // how long a queued message waits for a cancelled turn to end
const HISTORY_TURNS = 50; // stored turns shown when a session is resumed

const ui = {
  status: byId("conn-status"),
  voiceToggle: byId("voice-toggle"),
  panelToggle: byId("panel-toggle"),
  opsLink: byId("ops-link"),
  signOut: byId("sign-out"),
  signIn: byId("sign-in"),
  signInReason: byId("sign-in-reason"),
  signInForm: byId("sign-in-form"),
  tokenInput: byId("token-input"),
  workspace: byId("workspace"),
  composer: byId("composer"),
  input: byId("composer-input"),
  send: byId("send-button"),
  mic: byId("mic-button"),
  handsFree: byId("handsfree-button"),
  stop: byId("stop-button"),
  sessionLine: byId("session-line"),
  sidePanel: byId("side-panel"),
};

const notices = new Notices(byId("notices"));
const view = new ChatView(byId("messages"), byId("empty-hint"));
const panel = new ProgressPanel({
  progressList: byId("progress-list"),
  progressNote: byId("progress-note"),
  assessmentList: byId("assessment-list"),
  assessmentNote: byId("assessment-note"),
});
const focusNames = new FocusNames();
const drills = new DrillCatalog();
const practice = new PracticeCard(
  {
    focusLine: byId("practice-focus"),
    reason: byId("practice-reason"),
    drills: byId("practice-drills"),
    source: byId("practice-source"),
    note: byId("practice-note"),
  },
  focusNames,
  drills,
);
const feedback = new FeedbackCard(
  {
    button: byId("feedback-ask"),
    body: byId("feedback-body"),
    strengths: byId("feedback-strengths"),
    weaknesses: byId("feedback-weaknesses"),
    tips: byId("feedback-tips"),
    drills: byId("feedback-drills"),
    source: byId("feedback-source"),
    note: byId("feedback-note"),
  },
  drills,
  // What the page observed of this session: the assessments shown beside it, by focus.
  () => ({ session_id: state.sessionId, assessed: Object.fromEntries(panel.assessed) }),
);
const insights = new InsightsCard({
  card: byId("insights-card"),
  list: byId("insight-list"),
  note: byId("insight-note"),
  button: byId("insight-new"),
});
const picker = new FocusPicker(
  { form: byId("focus-form"), options: byId("focus-options"), status: byId("focus-status"), save: byId("focus-save") },
  focusNames,
  () => {
    // A new choice changes the levels shown and what today's practice is about.
    panel.loadProgress(state.token);
    practice.load(state.token);
  },
);
// The change last answered from this page: a refusal (`error` change_*) is shown on its card.
let answeredChange = null;
const changes = new ChangeCards(byId("messages"), focusNames, (changeId, accept) => {
  answeredChange = changeId;
  return client.send({ type: accept ? "change.accept" : "change.reject", change_id: changeId });
});
const player = new AudioPlayer();
const recorder = new MicRecorder();
const handsFree = new HandsFree();
const HANDS_FREE_SESSION = { input_audio_format: "pcm16", turn_detection: { type: "server_vad" } };
const client = new RealtimeClient({ url: "/v1/realtime", token: () => state.token });

const state = {
  token: null,
  turns: new Map(),
  current: null, // the turn the server is working on (or that we are waiting for)
  queued: null, // a message waiting for the current turn to end, or for the connection
  queuedTimer: 0,
  recordingTurn: null,
  recordStartedAt: 0,
  voiceInputOff: false,
  rateLimitedUntil: 0,
  rateTimer: 0,
  retryTicker: 0,
  sessionId: null,
};

// ------------------------------------------------------------------ sign-in

function start() {
  ui.voiceToggle.checked = readPref(VOICE_PREF) === "1";
  const token = takeToken();
  if (token) signIn(token);
  else showSignIn();
}

function signIn(token) {
  const claims = claimsOf(token);
  const left = msUntilExpiry(claims);
  if (left !== null && left <= 0) {
    clearToken();
    showSignIn("This token has expired. Paste a new one.");
    return;
  }
  state.token = token;
  ui.signIn.hidden = true;
  ui.workspace.hidden = false;
  ui.signOut.hidden = false;
  ui.opsLink.hidden = !hasRole(claims, "ops");
  document.body.dataset.user = claims?.sub || "";
  client.connect();
  panel.loadProgress(token);
  loadCoaching(token);
  changes.loadPending(token);
  ui.input.focus();
}

/** The coaching cards: focus names first, so the practice card can name its focus. */
async function loadCoaching(token) {
  insights.load(token);
  await picker.load(token);
  practice.load(token);
}

function showSignIn(reason) {
  state.token = null;
  ui.workspace.hidden = true;
  ui.signOut.hidden = true;
  ui.opsLink.hidden = true;
  ui.signIn.hidden = false;
  ui.signInReason.textContent = reason || "Paste the access token your coaching app gave you.";
  ui.signInReason.classList.toggle("error-text", Boolean(reason));
  ui.tokenInput.value = "";
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
  signIn(token);
});

ui.signOut.addEventListener("click", () => {
  stopEverything();
  client.close();
  client.sessionId = null;
  clearToken();
  showSignIn();
});

// ------------------------------------------------------------------ connection status

client.addEventListener("status", (event) => {
  const { state: conn, message, retryAt, kind, session } = event.detail;
  if (conn === "open") {
    notices.hide("conn");
    clearInterval(state.retryTicker);
    onSessionOpen(session);
    return;
  }
  if (conn === "waiting") {
    showRetry(message, retryAt);
    return;
  }
  if (conn === "signed_out" && kind === "auth") {
    stopEverything();
    clearToken();
    notices.hide("conn");
    showSignIn(message === "Signed out" ? undefined : message);
    return;
  }
  if (conn === "failed") {
    notices.show("conn", "error", message);
  }
  setStatus(conn, message);
});

client.addEventListener("closed", () => {
  if (recorder.recording || state.recordingTurn) {
    recorder.discard();
    endRecordingUi();
    if (state.recordingTurn) view.remove(state.recordingTurn);
    state.recordingTurn = null;
    notices.show("mic", "warn", "The connection dropped while recording; that recording was not sent.", { timeoutMs: 8000 });
  }
  const turn = state.current;
  if (turn && turn.open) {
    view.finish(turn, null, "failed");
    view.note(turn, "The connection dropped before the reply finished.", retryAction(turn));
  }
  state.current = null;
  document.getElementById("messages").removeAttribute("aria-busy");
  updateControls();
});

function showRetry(message, retryAt) {
  clearInterval(state.retryTicker);
  const tick = () => {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    const text = `${message} Reconnecting in ${seconds} s…`;
    setStatus("waiting", seconds ? `Reconnecting in ${seconds} s` : "Reconnecting…");
    notices.show("conn", "warn", text, { action: { label: "Reconnect now", run: () => client.connectNow() } });
  };
  tick();
  state.retryTicker = setInterval(tick, 1000);
}

function setStatus(conn, text) {
  ui.status.dataset.state = conn;
  ui.status.textContent = text;
  updateControls();
}

function onSessionOpen(session) {
  const resumed = Boolean(session?.resumed);
  const changed = state.sessionId && state.sessionId !== session.session_id;
  if (changed) {
    notices.show("session", "info", "A new coaching session started; the coach does not remember the earlier conversation.", { timeoutMs: 10000 });
  }
  if (state.sessionId !== session.session_id) {
    panel.reset();
    feedback.reset(state.token);
    panel.loadAssessments(state.token, session.session_id);
    if (resumed) loadHistory(session.session_id);
  }
  state.sessionId = session.session_id;
  ui.sessionLine.textContent = `Session ${String(session.session_id).slice(0, 12)}${resumed ? " · resumed" : ""}`;
  setStatus("open", "Connected");
  const listen = handsFree.on ? HANDS_FREE_SESSION : {};
  client.send({ type: "session.update", session: { voice: { output: ui.voiceToggle.checked }, tools: true, ...listen } });
  flushQueued();
}

/** The resumed session's stored turns, above whatever this tab has shown since. */
async function loadHistory(sessionId) {
  let body;
  try {
    body = await getJson(`/v1/sessions/${encodeURIComponent(sessionId)}/interactions?limit=${HISTORY_TURNS}`, state.token);
  } catch (err) {
    notices.show("history", "warn", `Earlier turns of this session could not be loaded: ${err.message}.`, { timeoutMs: 10000 });
    return;
  }
  if (state.sessionId !== sessionId) return; // another session started meanwhile
  // Newest first: each is put at the top, so the oldest ends up first.
  for (const row of Array.isArray(body?.data) ? body.data : []) {
    if (!row?.turn_id || state.turns.has(row.turn_id)) continue;
    const turn = new Turn(row.turn_id, { text: row.user_text || "", voice: row.audio_in_ms > 0 });
    turn.timings = row.timings || null;
    turn.provider = row.provider;
    turn.model = row.model;
    turn.fallbacks = Array.isArray(row.fallbacks) && row.fallbacks.length > 0;
    state.turns.set(turn.id, turn);
    view.addTurn(turn, null, { earlier: true });
    turn.userItem.classList.add("stored");
    view.finish(turn, row.reply_text || "", row.status === "completed" ? "done" : row.status === "cancelled" ? "stopped" : "failed");
    if (row.status === "cancelled") view.note(turn, "Stopped.");
    else if (row.status === "failed") view.note(turn, "The coach could not answer.", { kind: "error" });
    view.showTimings(turn);
  }
  view.scrollToEnd();
}

// ------------------------------------------------------------------ server events

client.addEventListener("event", (event) => onServerEvent(event.detail));

function onServerEvent(msg) {
  switch (msg.type) {
    case "transcript":
      return onTranscript(msg);
    case "input_audio.speech_started":
      return onSpeechStarted(msg);
    case "transcript.delta":
      return onTranscriptDelta(msg);
    case "input_audio.speech_stopped":
      return onSpeechStopped(msg);
    case "response.started":
      return onStarted(msg);
    case "response.delta":
      return onDelta(msg);
    case "response.audio":
      return onAudio(msg);
    case "response.completed":
      return onCompleted(msg);
    case "response.failed":
      return onFailed(msg);
    case "assessment.created":
      panel.addAssessment(msg.assessment, { live: true });
      panel.refreshSoon(state.token);
      return undefined;
    case "insight.created":
      insights.add(msg.insight, { live: true });
      return undefined;
    case "response.tool_call":
      return showToolCall(turnFor(msg.turn_id), msg);
    case "response.tool_result":
      return showToolResult(turnFor(msg.turn_id), msg);
    case "change.proposed":
      return changes.propose(msg.change);
    case "change.applied":
      changes.settle(msg.change);
      if (msg.change?.kind === "focus_change") {
        picker.load(state.token); // the new focuses, ticked
        panel.loadProgress(state.token);
      }
      return undefined;
    case "change.rejected":
      return changes.settle(msg.change);
    case "coaching.feedback":
      view.addFeedback(msg.text, msg.weakest_metric);
      return undefined;
    case "rate_limited":
      return onRateLimited(msg);
    case "error":
      return onError(msg);
    default:
      return undefined; // session.created/updated, pong, and types newer than this page
  }
}

function turnFor(turnId, { voice = false } = {}) {
  let turn = state.turns.get(turnId);
  if (!turn) {
    // A turn this tab did not start (another tab on the same session).
    turn = new Turn(turnId, { voice });
    state.turns.set(turnId, turn);
    view.addTurn(turn, voice ? "…" : "(sent from another window)");
  }
  return turn;
}

function onTranscript(msg) {
  const turn = turnFor(msg.turn_id, { voice: true });
  const text = msg.text?.trim() || "(nothing heard)";
  view.setUserText(turn, text, typeof msg.audio_ms === "number" ? `voice · ${formatMs(msg.audio_ms)}` : "voice");
  turn.userItem.classList.add("transcript");
}

function onSpeechStarted(msg) {
  player.stop(); // talking over the coach silences it here at once; the gateway cancels the reply
  const turn = turnFor(msg.turn_id, { voice: true });
  view.setUserPending(turn, "Listening…");
  handsFree.set("hearing");
}

function onTranscriptDelta(msg) {
  const turn = state.turns.get(msg.turn_id);
  if (turn && !turn.userText) view.setUserPending(turn, `${msg.text} …`);
}

function onSpeechStopped(msg) {
  const turn = state.turns.get(msg.turn_id);
  if (turn) {
    view.setUserPending(turn, "Transcribing…");
    turn.sentAt = performance.now();
    state.current = turn;
  }
  handsFree.set("thinking");
  updateControls();
}

function onStarted(msg) {
  const turn = turnFor(msg.turn_id);
  turn.provider = msg.provider;
  turn.model = msg.model;
  state.current = turn;
  document.getElementById("messages").setAttribute("aria-busy", "true");
  updateControls();
}

function onDelta(msg) {
  const turn = turnFor(msg.turn_id);
  if (turn.firstDeltaAt === null) turn.firstDeltaAt = performance.now();
  if (!turn.open) return; // stopped locally; ignore the tail still in flight
  view.appendDelta(turn, msg.text || "");
}

function onAudio(msg) {
  const turn = state.turns.get(msg.turn_id);
  if (!ui.voiceToggle.checked || (turn && turn.state === "stopped")) return;
  document.body.dataset.audioChunks = String(Number(document.body.dataset.audioChunks || 0) + 1);
  player.push(msg);
}

function onCompleted(msg) {
  const turn = turnFor(msg.turn_id);
  turn.timings = msg.timings || null;
  turn.provider = msg.provider || turn.provider;
  turn.model = msg.model || turn.model;
  turn.fallbacks = Array.isArray(msg.fallbacks) && msg.fallbacks.length > 0;
  const cancelled = msg.finish_reason === "cancelled";
  if (cancelled && handsFree.on && turn.voice && !turn.userText) {
    // A pause mid-sentence: the gateway heard the rest and answers it all as the next turn.
    view.remove(turn);
    state.turns.delete(turn.id);
    return endTurn(turn);
  }
  view.finish(turn, msg.text, cancelled ? "stopped" : "done");
  if (cancelled) view.note(turn, "Stopped.");
  else if (msg.finish_reason === "length") view.note(turn, "The reply reached its length limit.");
  view.showTimings(turn);
  endTurn(turn);
}

function onFailed(msg) {
  const turn = turnFor(msg.turn_id);
  view.finish(turn, msg.partial_text || null, "failed");
  const err = msg.error || {};
  const text = msg.partial_text ? "The reply was cut off" : "The coach could not answer";
  view.note(turn, `${text}: ${err.message || err.code || "unknown error"}.`, { kind: "error", ...(err.retryable !== false ? retryAction(turn) : {}) });
  endTurn(turn);
}

function endTurn(turn) {
  if (state.current === turn || state.current?.id === turn.id) state.current = null;
  document.getElementById("messages").removeAttribute("aria-busy");
  updateControls();
  flushQueued();
}

function onRateLimited(msg) {
  const waitMs = Math.max(0, Number(msg.retry_after_ms) || 0);
  state.rateLimitedUntil = Date.now() + waitMs;
  const turn = state.current && state.current.state === "waiting" ? state.current : null;
  if (turn) {
    view.finish(turn, null, "failed");
    view.note(turn, "Not sent: you reached a usage limit.", { kind: "warn", ...retryAction(turn) });
    endTurn(turn);
  }
  const scope = String(msg.scope || "usage").replace(/_/g, " ");
  clearInterval(state.rateTimer);
  const tick = () => {
    const left = state.rateLimitedUntil - Date.now();
    if (left <= 0) {
      clearInterval(state.rateTimer);
      notices.show("rate", "info", "You can send messages again.", { timeoutMs: 4000 });
      updateControls();
      return;
    }
    notices.show("rate", "warn", `Slow down: the ${scope} limit is reached. You can send again in ${Math.ceil(left / 1000)} s.`);
    updateControls();
  };
  tick();
  state.rateTimer = setInterval(tick, 1000);
}

function onError(msg) {
  const code = msg.code || "error";
  if (code === "no_active_turn") return;
  if (code.startsWith("change_") && answeredChange) {
    changes.failed(answeredChange, msg.message || code);
    return;
  }
  if (code === "audio_unavailable" || code.startsWith("stt_") || code.startsWith("audio_")) {
    onVoiceError(msg);
    return;
  }
  const turn = state.current && state.current.state === "waiting" ? state.current : null;
  if (code === "turn_in_progress" && turn) {
    // Our message overtook the end of a cancelled turn: send it again once that turn ends.
    state.current = null;
    queue({ type: "input_text", text: turn.userText, turn_id: turn.id }, turn);
    return;
  }
  if (turn) {
    view.finish(turn, null, "failed");
    view.note(turn, `Not answered: ${msg.message || code}.`, { kind: "error", ...(msg.retryable ? retryAction(turn) : {}) });
    endTurn(turn);
  }
  if (code === "shutting_down") notices.show("server", "warn", "The server is restarting; the page will reconnect.", { timeoutMs: 8000 });
  else notices.show(`error:${code}`, "error", `${msg.message || "Something went wrong"} (${code})`, { timeoutMs: msg.retryable ? 8000 : 0 });
}

function onVoiceError(msg) {
  const turn = state.current;
  if (turn?.voice && turn.open) {
    view.finish(turn, null, "failed");
    view.setUserText(turn, "(voice message)");
    view.note(turn, `Voice input failed: ${msg.message || msg.code}.`, { kind: "error" });
    endTurn(turn);
  }
  if (msg.code === "audio_unavailable") {
    state.voiceInputOff = true;
    document.body.dataset.voiceInput = "unavailable";
    if (recorder.recording) {
      recorder.discard();
      endRecordingUi();
      if (state.recordingTurn) view.remove(state.recordingTurn);
      state.recordingTurn = null;
    }
    notices.show("voice", "warn", "Voice input is not enabled on this server. You can still type.");
    updateControls();
    return;
  }
  notices.show("voice", "error", `Voice input failed: ${msg.message || msg.code}`, { timeoutMs: 10000 });
}

function retryAction(turn) {
  if (turn.voice || !turn.userText) return {};
  return { action: { label: "Retry", run: (event) => {
    event.currentTarget.disabled = true;
    sendText(turn.userText);
  } } };
}

// ------------------------------------------------------------------ sending

function sendText(text) {
  player.unlock();
  if (Date.now() < state.rateLimitedUntil) {
    notices.show("rate", "warn", `Please wait ${Math.ceil((state.rateLimitedUntil - Date.now()) / 1000)} s before sending again.`);
    return false;
  }
  const turn = new Turn(randomId("turn"), { text });
  state.turns.set(turn.id, turn);
  view.addTurn(turn);
  view.scrollToEnd();
  const event = { type: "input_text", text, turn_id: turn.id };
  if (state.current || !client.isOpen) {
    if (state.current) bargeIn();
    queue(event, turn);
  } else {
    dispatch(event, turn);
  }
  return true;
}

function dispatch(event, turn) {
  turn.sentAt = performance.now();
  if (!client.send(event)) {
    queue(event, turn);
    return;
  }
  state.current = turn;
  updateControls();
}

/** Hold one message until the current turn ends (after a barge-in) or the socket is back. */
function queue(event, turn) {
  if (state.queued) {
    const old = state.queued.turn;
    view.finish(old, null, "failed");
    view.note(old, "Not sent: replaced by a newer message.");
  }
  state.queued = { event, turn };
  clearTimeout(state.queuedTimer);
  state.queuedTimer = setTimeout(flushQueued, CANCEL_GRACE_MS);
  if (!client.isOpen) view.note(turn, "Waiting for the connection…");
}

function flushQueued() {
  clearTimeout(state.queuedTimer);
  const queued = state.queued;
  if (!queued || !client.isOpen) return;
  if (state.current && state.current.open) {
    // Still waiting for the cancelled turn's end; try again shortly.
    state.queuedTimer = setTimeout(flushQueued, 300);
    return;
  }
  state.queued = null;
  queued.turn.coachItem.querySelector(".turn-note")?.remove();
  queued.turn.coachItem.classList.remove("empty");
  dispatch(queued.event, queued.turn);
}

/** Barge-in: stop the running reply and whatever is playing. */
function bargeIn() {
  const turn = state.current;
  if (turn && turn.open) client.send({ type: "response.cancel", turn_id: turn.id });
  player.stop();
  updateControls();
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (!text) return;
  if (sendText(text)) {
    ui.input.value = "";
    autosize();
  }
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.input.addEventListener("input", autosize);

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

ui.stop.addEventListener("click", () => stopReply());
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !ui.stop.disabled) stopReply();
});

function stopReply() {
  const turn = state.current;
  bargeIn();
  if (turn && turn.open) {
    // Show it stopped at once; the server confirms with a `cancelled` completion.
    view.setState(turn, "stopped");
  }
  updateControls();
}

// ------------------------------------------------------------------ voice

ui.voiceToggle.addEventListener("change", () => {
  const on = ui.voiceToggle.checked;
  writePref(VOICE_PREF, on ? "1" : "0");
  if (on) player.unlock();
  else player.stop();
  client.send({ type: "session.update", session: { voice: { output: on } } });
});

player.addEventListener("change", updateControls);
player.addEventListener("firstaudio", (event) => {
  const turn = state.turns.get(event.detail.turnId);
  if (turn && turn.firstAudioAt === null) {
    turn.firstAudioAt = event.detail.at;
    if (!turn.open) view.showTimings(turn);
  }
});
player.addEventListener("decodeerror", () => {
  notices.show("audio-decode", "warn", "Some reply audio could not be played by this browser.", { timeoutMs: 8000 });
});

ui.mic.addEventListener("click", () => (state.recordingTurn ? finishRecording() : startRecording()));
ui.handsFree.addEventListener("click", () => (handsFree.on ? stopHandsFree() : startHandsFree()));

handsFree.addEventListener("state", (event) => {
  const mode = event.detail;
  document.body.dataset.handsFree = mode;
  ui.handsFree.setAttribute("aria-pressed", String(mode !== "off"));
  if (client.isOpen) setStatus("open", HANDS_FREE_LABELS[mode] || "Connected");
});

async function startHandsFree() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    return notices.show("mic", "warn", "The microphone needs a secure page (https or localhost).", { timeoutMs: 8000 });
  }
  if (state.voiceInputOff) return notices.show("voice", "warn", "Voice input is not enabled on this server. You can still type.");
  if (!client.isOpen) return notices.show("mic", "warn", "Not connected yet; try again in a moment.", { timeoutMs: 5000 });
  player.unlock();
  ui.voiceToggle.checked = true;
  writePref(VOICE_PREF, "1");
  client.send({ type: "session.update", session: { voice: { output: true }, ...HANDS_FREE_SESSION } });
  try {
    await handsFree.start((buffer) => client.isOpen && client.sendBinary(buffer));
  } catch (err) {
    stopHandsFree();
    const denied = err?.name === "NotAllowedError" || err?.name === "SecurityError";
    notices.show("mic", "error", denied ? "Microphone access was denied. Allow it in the browser's site settings to talk to your coach." : `The microphone could not be started: ${err?.message || err}`);
  }
  return undefined;
}

function stopHandsFree() {
  handsFree.stop();
  if (client.isOpen) client.send({ type: "session.update", session: { turn_detection: null } });
}

async function startRecording() {
  const support = recorderSupport();
  if (!support.ok) return notices.show("mic", "warn", support.why, { timeoutMs: 8000 });
  if (state.voiceInputOff) return notices.show("voice", "warn", "Voice input is not enabled on this server. You can still type.");
  if (!client.isOpen) return notices.show("mic", "warn", "Not connected yet; try again in a moment.", { timeoutMs: 5000 });
  if (Date.now() < state.rateLimitedUntil) return notices.show("rate", "warn", "Please wait before sending again.");
  player.unlock();
  if (state.current || player.playing) bargeIn();
  const turn = new Turn(randomId("turn"), { voice: true });
  state.recordingTurn = turn;
  ui.mic.setAttribute("aria-pressed", "true");
  ui.mic.setAttribute("aria-label", "Stop recording and send");
  try {
    client.send({ type: "session.update", session: { input_audio_format: "webm" } });
    await recorder.start((buffer) => client.sendBinary(buffer), () => finishRecording());
  } catch (err) {
    state.recordingTurn = null;
    endRecordingUi();
    const denied = err?.name === "NotAllowedError" || err?.name === "SecurityError";
    notices.show("mic", "error", denied ? "Microphone access was denied. Allow it in the browser's site settings to talk to your coach." : `The microphone could not be started: ${err?.message || err}`);
    return undefined;
  }
  state.turns.set(turn.id, turn);
  view.addTurn(turn, "Listening…");
  view.setUserPending(turn, "Listening…");
  state.recordStartedAt = performance.now();
  document.body.classList.add("recording");
  setStatus("open", "Recording…");
  return undefined;
}

async function finishRecording() {
  const turn = state.recordingTurn;
  if (!turn) return;
  state.recordingTurn = null;
  endRecordingUi();
  await recorder.stop();
  if (!client.isOpen) {
    view.remove(turn);
    notices.show("mic", "warn", "Not connected; the recording was not sent.", { timeoutMs: 8000 });
    return;
  }
  view.setUserPending(turn, "Transcribing…");
  turn.sentAt = performance.now();
  client.send({ type: "input_audio.commit", turn_id: turn.id });
  state.current = turn;
  updateControls();
}

function endRecordingUi() {
  ui.mic.setAttribute("aria-pressed", "false");
  ui.mic.setAttribute("aria-label", "Record a voice message");
  document.body.classList.remove("recording");
  if (client.isOpen) setStatus("open", "Connected");
}

function stopEverything() {
  recorder.discard();
  handsFree.stop();
  state.recordingTurn = null;
  endRecordingUi();
  player.stop();
  state.current = null;
  state.queued = null;
}

// ------------------------------------------------------------------ controls

function updateControls() {
  const limited = Date.now() < state.rateLimitedUntil;
  const busy = Boolean(state.current && state.current.open);
  ui.stop.disabled = !(busy || player.playing);
  ui.send.disabled = limited;
  ui.send.textContent = limited ? `Wait ${Math.ceil((state.rateLimitedUntil - Date.now()) / 1000)} s` : "Send";
  ui.mic.disabled = state.voiceInputOff || (!client.isOpen && !state.recordingTurn);
  ui.mic.title = state.voiceInputOff ? "Voice input is not enabled on this server" : "Record a voice message";
  document.body.dataset.busy = busy ? "true" : "false";
  if (handsFree.on && handsFree.state !== "hearing") {
    handsFree.set(player.playing ? "speaking" : busy ? "thinking" : "listening");
  }
}

ui.panelToggle.addEventListener("click", () => {
  const open = ui.panelToggle.getAttribute("aria-expanded") !== "true";
  ui.panelToggle.setAttribute("aria-expanded", String(open));
  ui.sidePanel.classList.toggle("open", open);
  if (open) ui.sidePanel.querySelector("h2")?.focus?.();
});

function readPref(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writePref(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* storage disabled */
  }
}

start();
