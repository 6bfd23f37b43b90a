// Realtime WebSocket sessions against the gateway's /v1/realtime.
//
//   k6 run -e GATEWAY_URL=http://127.0.0.1:8000 -e TOKEN=$(coach-gateway token alice | tail -1) \
//       -e VUS=20 -e DURATION=30s -e TURNS=5 loadtests/k6/ws_realtime.js
//
// Each iteration is one session: connect with `Authorization: Bearer`, wait for
// `session.created`, then TURNS turns back to back (`input_text` -> `response.delta`... ->
// `response.completed`). TOKENS (comma-separated) gives each VU its own user, so that per-user
// quotas do not cap the test; otherwise every VU uses TOKEN.
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';

const BASE = (__ENV.GATEWAY_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const WS_URL = BASE.replace(/^http/, 'ws') + '/v1/realtime';
const TOKENS = (__ENV.TOKENS || __ENV.TOKEN || '').split(',').filter((t) => t);
const TURNS = parseInt(__ENV.TURNS || '5', 10);
const TURN_TIMEOUT_MS = parseInt(__ENV.TURN_TIMEOUT_MS || '30000', 10);
const TEXT = __ENV.TEXT || 'How can I keep my breath steady when I sing long high notes?';

export const options = {
  scenarios: {
    sessions: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '10', 10),
      duration: __ENV.DURATION || '30s',
      gracefulStop: '30s',
    },
  },
  thresholds: {
    ws_errors: ['count==0'],
    turn_success: ['rate>0.99'],
    ttft_client_ms: ['p(95)<2000'],
    gateway_added_ms: ['p(99)<50'],
    checks: ['rate>0.99'],
  },
};

const ttft = new Trend('ttft_client_ms', true);
const turnTime = new Trend('turn_time_ms', true);
const gatewayAdded = new Trend('gateway_added_ms', true);
const errors = new Counter('ws_errors');
const turnsCompleted = new Counter('turns_completed');
const tokenEvents = new Counter('token_events');
const turnSuccess = new Rate('turn_success');

export function setup() {
  if (TOKENS.length === 0) {
    throw new Error('set TOKEN (or TOKENS) to a gateway JWT: coach-gateway token USER');
  }
}

export default function () {
  const token = TOKENS[(__VU - 1) % TOKENS.length];
  const ws = new WebSocket(WS_URL, null, { headers: { Authorization: `Bearer ${token}` } });
  let turn = 0;
  let sentAt = 0;
  let firstAt = 0;
  let timer = null;
  let created = false;

  const fail = (kind) => {
    errors.add(1, { kind });
    turnSuccess.add(false);
    ws.close();
  };
  const nextTurn = () => {
    if (turn >= TURNS) {
      ws.close();
      return;
    }
    turn += 1;
    firstAt = 0;
    sentAt = Date.now();
    ws.send(JSON.stringify({ type: 'input_text', text: TEXT, turn_id: `vu${__VU}-${__ITER}-${turn}` }));
    timer = setTimeout(() => fail('timeout'), TURN_TIMEOUT_MS);
  };

  ws.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    switch (event.type) {
      case 'session.created':
        created = true;
        nextTurn();
        break;
      case 'response.delta':
        if (!firstAt) {
          firstAt = Date.now();
          ttft.add(firstAt - sentAt);
        }
        tokenEvents.add(1);
        break;
      case 'response.completed': {
        clearTimeout(timer);
        turnTime.add(Date.now() - sentAt);
        const t = event.timings || {};
        if (t.ttft_ms != null && t.upstream_ttft_ms != null) {
          gatewayAdded.add(t.ttft_ms - t.upstream_ttft_ms);
        }
        const ok = check(event, { 'turn completed with text': (e) => e.text.length > 0 });
        turnSuccess.add(ok);
        turnsCompleted.add(1);
        nextTurn();
        break;
      }
      case 'response.failed':
      case 'rate_limited':
      case 'error':
        clearTimeout(timer);
        fail(event.type);
        break;
      default:
        break; // response.started, assessment.created, ...
    }
  };
  ws.onerror = (e) => {
    clearTimeout(timer);
    errors.add(1, { kind: 'socket' });
    console.error(`websocket error: ${e.error}`);
  };
  ws.onclose = () => {
    clearTimeout(timer);
    check(created, { 'session created': (c) => c === true });
  };
}
