// Records the microphone with MediaRecorder (webm/opus) and hands over chunks while recording,
// so the gateway receives the utterance as it is spoken, not all at once at the end.

const TIMESLICE_MS = 250;
const MAX_RECORDING_MS = 60000;
const MIME_TYPES = ["audio/webm;codecs=opus", "audio/webm"];

export function recorderSupport() {
  if (!window.isSecureContext) return { ok: false, why: "The microphone needs a secure page (https or localhost)." };
  if (!navigator.mediaDevices?.getUserMedia) return { ok: false, why: "This browser cannot record audio." };
  if (typeof window.MediaRecorder !== "function") return { ok: false, why: "This browser has no MediaRecorder." };
  if (!MIME_TYPES.some((t) => MediaRecorder.isTypeSupported(t))) {
    return { ok: false, why: "This browser cannot record webm/opus audio." };
  }
  return { ok: true, why: "" };
}

export class MicRecorder {
  constructor() {
    this.stream = null;
    this.recorder = null;
    this.chain = Promise.resolve();
    this.limitTimer = 0;
    this.take = null;
  }

  get recording() {
    return this.recorder?.state === "recording";
  }

  /**
   * Start recording; `onChunk(ArrayBuffer)` gets each chunk in order, `onLimit()` fires when
   * the maximum length is reached.
   */
  async start(onChunk, onLimit) {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const mimeType = MIME_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    this.recorder = new MediaRecorder(this.stream, { mimeType, audioBitsPerSecond: 32000 });
    this.chain = Promise.resolve();
    const take = {};
    this.take = take;
    this.recorder.addEventListener("dataavailable", (event) => {
      if (this.take !== take || !event.data || event.data.size === 0) return;
      const blob = event.data;
      // Blob -> ArrayBuffer is async; chain it so chunks leave in the order they were recorded.
      this.chain = this.chain.then(() => blob.arrayBuffer()).then(onChunk);
    });
    this.recorder.start(TIMESLICE_MS);
    this.limitTimer = setTimeout(() => onLimit?.(), MAX_RECORDING_MS);
  }

  /** Stop; resolves once the last chunk has been handed over. */
  async stop() {
    clearTimeout(this.limitTimer);
    const recorder = this.recorder;
    if (recorder && recorder.state !== "inactive") {
      const stopped = new Promise((resolve) => recorder.addEventListener("stop", resolve, { once: true }));
      recorder.stop();
      await stopped;
    }
    this.releaseMic();
    await this.chain;
  }

  /** Stop and drop whatever was not sent yet. */
  discard() {
    clearTimeout(this.limitTimer);
    this.take = null;
    this.chain = Promise.resolve();
    if (this.recorder && this.recorder.state !== "inactive") {
      try {
        this.recorder.stop();
      } catch {
        /* already stopped */
      }
    }
    this.releaseMic();
  }

  releaseMic() {
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
  }
}
