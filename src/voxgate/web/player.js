// Playback that starts while the audio is still arriving: 16-bit PCM from a
// streamed response, converted to float and scheduled back to back on a Web
// Audio AudioContext as each piece comes in. What was received is kept, so the
// result can be saved as a WAV without asking the server again.

// Head start given to the first piece (and to any piece after the network fell
// behind): room for the next piece to arrive before this one has played out.
const LEAD_S = 0.1;

export class StreamPlayer {
  constructor() {
    this.context = null;
    this.generation = 0; // bumped by stop(): a read still under way then drops its data
    this.reset();
  }

  reset() {
    this.sources = [];
    this.pcm = []; // Int16Array pieces as received
    this.sampleRate = 0;
    this.startTime = null; // context time the first piece plays at
    this.nextTime = 0;
    this.scheduledSeconds = 0;
    this.chunks = 0;
    this.bytes = 0;
    this.gaps = 0; // pieces that arrived after the audio before them had ended
    this.gapSeconds = 0;
    this.endedSources = 0;
    this.streamEnded = false;
    this.onFinished = null;
  }

  /**
   * The AudioContext, created or resumed. Call it from the click handler
   * before any await: browsers let a page start audio only in a user gesture.
   */
  unlock() {
    if (!this.context) this.context = new AudioContext({ latencyHint: "interactive" });
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.context;
  }

  /** Seconds of this result played so far. */
  get playedSeconds() {
    if (!this.context || this.startTime === null) return 0;
    return Math.min(this.scheduledSeconds, Math.max(0, this.context.currentTime - this.startTime));
  }

  /**
   * Play a streamed PCM response (s16le mono at `sampleRate`).
   * `onFirstAudio` is called once, when the first audible piece is scheduled;
   * `onProgress` after each piece. Resolves when the stream has ended; the
   * `finished` promise resolves when the last piece has played.
   */
  async play(response, sampleRate, { onFirstAudio, onProgress } = {}) {
    const context = this.unlock();
    this.reset();
    const generation = ++this.generation;
    this.sampleRate = sampleRate;
    this.finished = new Promise((resolve) => {
      this.onFinished = resolve;
    });
    const reader = response.body.getReader();
    let carry = null; // an odd byte left from the previous read
    for (;;) {
      const { done, value } = await reader.read();
      if (generation !== this.generation) {
        reader.cancel().catch(() => {});
        return;
      }
      if (done) break;
      this.bytes += value.byteLength;
      let bytes = value;
      if (carry !== null) {
        bytes = new Uint8Array(value.byteLength + 1);
        bytes[0] = carry;
        bytes.set(value, 1);
        carry = null;
      }
      if (bytes.byteLength % 2) {
        carry = bytes[bytes.byteLength - 1];
        bytes = bytes.subarray(0, bytes.byteLength - 1);
      }
      if (!bytes.byteLength) continue;
      const samples = toInt16(bytes);
      this.pcm.push(samples);
      const first = this.startTime === null;
      this.schedule(context, samples);
      if (first && onFirstAudio) onFirstAudio();
      if (onProgress) onProgress();
    }
    this.streamEnded = true;
    this.checkFinished();
  }

  schedule(context, samples) {
    const floats = new Float32Array(samples.length);
    for (let i = 0; i < samples.length; i++) floats[i] = samples[i] / 32768;
    const buffer = context.createBuffer(1, floats.length, this.sampleRate);
    buffer.copyToChannel(floats, 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    // Back to back; if the network fell behind, resume now (a gap, never an overlap).
    const at = Math.max(this.nextTime, context.currentTime + LEAD_S);
    if (this.startTime === null) {
      this.startTime = at;
    } else if (at > this.nextTime + 0.001) {
      this.gaps += 1;
      this.gapSeconds += at - this.nextTime;
    }
    source.start(at);
    source.onended = () => {
      this.endedSources += 1;
      this.checkFinished();
    };
    this.sources.push(source);
    this.nextTime = at + buffer.duration;
    this.scheduledSeconds += buffer.duration;
    this.chunks += 1;
  }

  checkFinished() {
    if (this.streamEnded && this.endedSources >= this.sources.length && this.onFinished) {
      const resolve = this.onFinished;
      this.onFinished = null;
      resolve();
    }
  }

  /** Silence everything scheduled (the stream itself is aborted by the caller). */
  stop() {
    this.generation += 1;
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // never started
      }
    }
    this.endedSources = this.sources.length;
    this.streamEnded = true;
    this.checkFinished();
  }

  /** What was received, as raw PCM or as a WAV file. */
  blob(kind = "wav") {
    const data = this.pcm.map((p) => new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    if (kind === "pcm") return new Blob(data, { type: "audio/pcm" });
    const length = data.reduce((n, d) => n + d.byteLength, 0);
    return new Blob([wavHeader(length, this.sampleRate), ...data], { type: "audio/wav" });
  }
}

function toInt16(bytes) {
  // Little-endian on the wire; read through a DataView so a big-endian
  // machine, or an unaligned offset, cannot garble it.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Int16Array(bytes.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
  return out;
}

/** A 44-byte RIFF header for `dataBytes` of 16-bit mono PCM. */
export function wavHeader(dataBytes, sampleRate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => {
    for (let i = 0; i < s.length; i++) header.setUint8(offset + i, s.charCodeAt(i));
  };
  text(0, "RIFF");
  header.setUint32(4, 36 + dataBytes, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true); // fmt chunk size
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, sampleRate, true);
  header.setUint32(28, sampleRate * 2, true); // byte rate
  header.setUint16(32, 2, true); // block align
  header.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  header.setUint32(40, dataBytes, true);
  return header.buffer;
}
