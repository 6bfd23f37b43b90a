// Hands-free mode: the microphone stays open and streams pcm16 (16 kHz mono) to the gateway,
// which finds the end of each utterance itself (`turn_detection: server_vad`). The page shows
// what the conversation is doing (listening / thinking / speaking); speaking over the coach
// stops its voice here at once, and the gateway cancels the reply.

const RATE = 16000;
const FRAME_SAMPLES = 1600; // 100 ms per binary frame

export class HandsFree extends EventTarget {
  constructor() {
    super();
    this.stream = null;
    this.ctx = null;
    this.node = null;
    this.pending = [];
    this.pendingLength = 0;
    this.state = "off";
  }

  get on() {
    return this.state !== "off";
  }

  /** Open the microphone; `send(ArrayBuffer)` gets 100 ms of pcm16 at a time. */
  async start(send) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const Context = window.AudioContext || window.webkitAudioContext;
    this.ctx = new Context();
    const source = this.ctx.createMediaStreamSource(this.stream);
    // ScriptProcessor: deprecated, but it needs no separate worklet file and runs everywhere.
    this.node = this.ctx.createScriptProcessor(4096, 1, 1);
    const ratio = this.ctx.sampleRate / RATE;
    this.node.onaudioprocess = (event) => this.collect(event.inputBuffer.getChannelData(0), ratio, send);
    source.connect(this.node);
    this.node.connect(this.ctx.destination); // a ScriptProcessor only runs when connected
    this.set("listening");
  }

  stop() {
    this.node?.disconnect();
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.ctx?.close().catch(() => {});
    this.stream = this.ctx = this.node = null;
    this.pending = [];
    this.pendingLength = 0;
    this.set("off");
  }

  /** Downsample to 16 kHz (linear), convert to pcm16, send in 100 ms frames. */
  collect(input, ratio, send) {
    const count = Math.floor(input.length / ratio);
    const out = new Int16Array(count);
    for (let i = 0; i < count; i += 1) {
      const at = i * ratio;
      const low = Math.floor(at);
      const high = Math.min(low + 1, input.length - 1);
      const value = input[low] + (input[high] - input[low]) * (at - low);
      out[i] = Math.max(-32768, Math.min(32767, Math.round(value * 32768)));
    }
    this.pending.push(out);
    this.pendingLength += out.length;
    while (this.pendingLength >= FRAME_SAMPLES) send(this.take(FRAME_SAMPLES));
  }

  take(samples) {
    const frame = new Int16Array(samples);
    let filled = 0;
    while (filled < samples) {
      const head = this.pending[0];
      const used = Math.min(head.length, samples - filled);
      frame.set(head.subarray(0, used), filled);
      filled += used;
      if (used === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(used);
    }
    this.pendingLength -= samples;
    return frame.buffer;
  }

  /** listening | hearing | thinking | speaking | off: shown on the page. */
  set(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

export const HANDS_FREE_LABELS = {
  listening: "Listening…",
  hearing: "Hearing you…",
  thinking: "Thinking…",
  speaking: "Speaking… (talk to interrupt)",
};
