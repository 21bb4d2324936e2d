// wav.js - the export: interleaved stereo float samples to a 16-bit PCM
// WAV file (RIFF, little-endian), and the mix of recorded stems.
//
// Design: the page records every stem it receives (recorder below, chunks
// by output position); an export lays them out on one timeline, so stems
// and mix line up exactly as the server aligned them.

export function wavBlob(interleaved, sampleRate, channels = 2) {
  const frames = Math.floor(interleaved.length / channels);
  const dataBytes = frames * channels * 2;
  const buf = new ArrayBuffer(44 + dataBytes);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, 'RIFF');
  v.setUint32(4, 36 + dataBytes, true);
  text(8, 'WAVE');
  text(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, channels, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * channels * 2, true);
  v.setUint16(32, channels * 2, true);
  v.setUint16(34, 16, true);
  text(36, 'data');
  v.setUint32(40, dataBytes, true);
  const pcm = new Int16Array(buf, 44, frames * channels);
  for (let i = 0; i < pcm.length; i++) {
    const x = Math.round(interleaved[i] * 32768);
    pcm[i] = x > 32767 ? 32767 : x < -32768 ? -32768 : x;
  }
  return new Blob([buf], { type: 'audio/wav' });
}

// Chunks of one stem by output position; the gaps (a reconnect of a live
// source) stay silent. maxFrames bounds the memory: later audio is not kept.
export class StemRecorder {
  constructor(maxFrames) {
    this.chunks = [];
    this.frames = 0;
    this.end = 0;
    this.maxFrames = maxFrames;
    this.truncated = false;
  }

  add(position, samples) {
    if (position < this.end) { // overlap after a reconnect: keep the first
      const skip = this.end - position;
      if (2 * skip >= samples.length) return;
      samples = samples.subarray(2 * skip);
      position = this.end;
    }
    const frames = samples.length >> 1;
    if (position + frames > this.maxFrames) {
      this.truncated = true;
      return;
    }
    this.chunks.push({ position, samples });
    this.end = Math.max(this.end, position + frames);
  }

  // Forget everything from position `end` on.
  truncate(end) {
    this.chunks = this.chunks.filter((c) => c.position < end);
    for (const c of this.chunks)
      if (c.position + c.samples.length / 2 > end) c.samples = c.samples.subarray(0, (end - c.position) * 2);
    this.end = Math.min(this.end, end);
  }

  // The stem on a timeline of `frames` frames, times gain.
  render(frames, gain = 1, into = null) {
    const out = into || new Float32Array(frames * 2);
    if (gain === 0) return out;
    for (const { position, samples } of this.chunks) {
      const n = Math.min(samples.length, (frames - position) * 2);
      const o = position * 2;
      if (gain === 1 && !into) out.set(samples.subarray(0, n), o);
      else for (let k = 0; k < n; k++) out[o + k] += gain * samples[k];
    }
    return out;
  }
}

// The mix of recorders with gains (already with mute, solo and master).
export function renderMix(recorders, gains) {
  let frames = 0;
  for (const r of recorders) frames = Math.max(frames, r.end);
  const out = new Float32Array(frames * 2);
  recorders.forEach((r, i) => r.render(frames, gains[i], out));
  return out;
}
