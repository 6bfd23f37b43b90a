// Plays `response.audio` chunks back to back with the Web Audio API.
//
// Chunks arrive in order on the socket. Each is decoded as soon as it arrives (decoding runs in
// parallel), but scheduled strictly in arrival order, each starting where the previous one ends,
// so sentences play gap-free while later ones are still being synthesized.

const LEAD_S = 0.04; // scheduling slack so the first chunk does not start in the past

export class AudioPlayer extends EventTarget {
  constructor() {
    super();
    this.ctx = null;
    this.playhead = 0;
    this.sources = new Set();
    this.chain = Promise.resolve();
    this.generation = 0;
    this.turnId = null;
    this.firstStartReported = new Set();
  }

  get supported() {
    return typeof (window.AudioContext || window.webkitAudioContext) === "function";
  }

  get playing() {
    return this.sources.size > 0;
  }

  /** Create or resume the AudioContext; call from a user gesture (autoplay rules). */
  unlock() {
    if (!this.supported) return;
    if (!this.ctx) {
      const Context = window.AudioContext || window.webkitAudioContext;
      this.ctx = new Context({ latencyHint: "interactive" });
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
  }

  /** Queue one `response.audio` event. */
  push(event) {
    if (!this.supported) return;
    this.unlock();
    const generation = this.generation;
    const decoded = this.decode(event).catch((err) => {
      this.dispatchEvent(new CustomEvent("decodeerror", { detail: { event, error: err } }));
      return null;
    });
    this.chain = this.chain.then(async () => {
      const buffer = await decoded;
      if (buffer && generation === this.generation) this.schedule(buffer, event.turn_id);
    });
  }

  /** Stop everything playing or queued (barge-in). */
  stop() {
    this.generation += 1;
    for (const source of this.sources) {
      try {
        source.stop();
      } catch {
        /* not started */
      }
    }
    this.sources.clear();
    this.playhead = 0;
    this.chain = Promise.resolve();
    this.changed();
  }

  async decode(event) {
    const bytes = base64ToBytes(event.audio || "");
    if (event.format === "pcm16") return this.pcm16Buffer(bytes, event.sample_rate || 16000);
    // decodeAudioData detaches the buffer it is given: hand it its own copy.
    return this.ctx.decodeAudioData(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }

  pcm16Buffer(bytes, sampleRate) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const frames = Math.floor(bytes.byteLength / 2);
    const buffer = this.ctx.createBuffer(1, Math.max(frames, 1), sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < frames; i += 1) channel[i] = view.getInt16(i * 2, true) / 32768;
    return buffer;
  }

  schedule(buffer, turnId) {
    const ctx = this.ctx;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const startAt = Math.max(ctx.currentTime + LEAD_S, this.playhead);
    source.start(startAt);
    this.playhead = startAt + buffer.duration;
    this.sources.add(source);
    source.addEventListener("ended", () => {
      this.sources.delete(source);
      this.changed();
    });
    if (turnId && !this.firstStartReported.has(turnId)) {
      this.firstStartReported.add(turnId);
      const inMs = Math.max(0, (startAt - ctx.currentTime) * 1000);
      this.dispatchEvent(new CustomEvent("firstaudio", { detail: { turnId, at: performance.now() + inMs } }));
    }
    this.changed();
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }
}

export function base64ToBytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
