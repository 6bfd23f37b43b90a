// The gateway's OpenAI-compatible endpoint, streamed: POST /v1/chat/completions, stream: true.
//
//   k6 run -e GATEWAY_URL=http://127.0.0.1:8000 -e TOKEN=$(coach-gateway token alice | tail -1) \
//       -e VUS=20 -e DURATION=30s loadtests/k6/openai_http.js
//
// k6 reads a response whole, so the time to first token is approximated by the time to the
// first byte (`timings.waiting`): the gateway sends headers with the turn's first event. The
// body is checked chunk by chunk: content deltas, a finish reason, and the `[DONE]` trailer.
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const BASE = (__ENV.GATEWAY_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const TOKENS = (__ENV.TOKENS || __ENV.TOKEN || '').split(',').filter((t) => t);
const MODEL = __ENV.MODEL || 'coach';
const TEXT = __ENV.TEXT || 'How can I keep my breath steady when I sing long high notes?';

export const options = {
  scenarios: {
    completions: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '10', 10),
      duration: __ENV.DURATION || '30s',
      gracefulStop: '30s',
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    stream_errors: ['count==0'],
    ttfb_ms: ['p(95)<2000'],
    checks: ['rate>0.99'],
  },
};

const ttfb = new Trend('ttfb_ms', true);
const streamTime = new Trend('stream_time_ms', true);
const streamErrors = new Counter('stream_errors');
const tokenEvents = new Counter('token_events');
const completed = new Rate('stream_completed');

export function setup() {
  if (TOKENS.length === 0) {
    throw new Error('set TOKEN (or TOKENS) to a gateway JWT: coach-gateway token USER');
  }
}

function parseChunks(body) {
  const chunks = [];
  let done = false;
  for (const line of (body || '').split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6).trim();
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    chunks.push(JSON.parse(data));
  }
  return { chunks, done };
}

export default function () {
  const token = TOKENS[(__VU - 1) % TOKENS.length];
  const body = JSON.stringify({
    model: MODEL,
    stream: true,
    messages: [
      { role: 'system', content: 'You are a concise vocal coach.' },
      { role: 'user', content: TEXT },
    ],
  });
  const res = http.post(`${BASE}/v1/chat/completions`, body, {
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    timeout: '60s',
  });
  ttfb.add(res.timings.waiting);
  streamTime.add(res.timings.duration);
  const ok200 = check(res, { 'status 200': (r) => r.status === 200 });
  if (!ok200) {
    streamErrors.add(1, { kind: `http_${res.status}` });
    completed.add(false);
    return;
  }
  const { chunks, done } = parseChunks(res.body);
  const deltas = chunks.filter((c) => c.choices && c.choices[0] && c.choices[0].delta.content);
  tokenEvents.add(deltas.length);
  const failed = chunks.some((c) => c.error);
  const finished = chunks.some((c) => c.choices && c.choices[0] && c.choices[0].finish_reason);
  const ok = check(null, {
    'content streamed': () => deltas.length > 0,
    'finish reason sent': () => finished,
    'ends with [DONE]': () => done,
    'no error chunk': () => !failed,
  });
  if (!ok) streamErrors.add(1, { kind: 'stream' });
  completed.add(ok);
}
