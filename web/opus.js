// opus.js - Opus both ways through WebCodecs, where the browser has it
// (docs/protocol.md section 8.4).
//
// Input: an AudioEncoder at the session's rate; each packet is one
// audio_in message. The server drops `input.pre_skip` decoded frames: the
// encoder's lookahead, read once from the OpusHead that the encoder gives
// as its decoder description (probeOpus).
// Output: one AudioDecoder per stem, no description (so it drops
// nothing); the first `output.pre_skip` decoded frames of each stem are
// dropped here, after which decoded frame i is output position i.
//
// Threads: the page's main thread; WebCodecs calls back on it in order.

const FRAME_US = 20000;

function planar(interleaved, channels) {
  const frames = interleaved.length / channels;
  const out = new Float32Array(interleaved.length);
  for (let c = 0; c < channels; c++)
    for (let f = 0; f < frames; f++) out[c * frames + f] = interleaved[f * channels + c];
  return out;
}

// { ok, preSkip } or { ok: false, why }: whether this browser encodes and
// decodes Opus at `rate`, and its encoder's lookahead.
export async function probeOpus(rate, channels) {
  if (typeof AudioEncoder === 'undefined' || typeof AudioDecoder === 'undefined')
    return { ok: false, why: 'no WebCodecs in this browser' };
  if (![8000, 12000, 16000, 24000, 48000].includes(rate))
    return { ok: false, why: `Opus does not run at ${rate} Hz` };
  try {
    const enc = await AudioEncoder.isConfigSupported({ codec: 'opus', sampleRate: rate, numberOfChannels: channels });
    const dec = await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: rate, numberOfChannels: channels });
    if (!enc.supported || !dec.supported) return { ok: false, why: 'this browser has no Opus codec' };
    let desc = null;
    const e = new AudioEncoder({
      output: (_, meta) => {
        if (meta && meta.decoderConfig && meta.decoderConfig.description) desc = meta.decoderConfig.description;
      },
      error: () => {},
    });
    e.configure({ codec: 'opus', sampleRate: rate, numberOfChannels: channels });
    const frames = Math.round((rate * FRAME_US) / 1e6);
    e.encode(new AudioData({
      format: 'f32-planar', sampleRate: rate, numberOfFrames: frames, numberOfChannels: channels,
      timestamp: 0, data: new Float32Array(frames * channels),
    }));
    await e.flush();
    e.close();
    const head = desc && new Uint8Array(desc.buffer || desc, desc.byteOffset || 0);
    if (!head || head.length < 19 || String.fromCharCode(...head.subarray(0, 8)) !== 'OpusHead')
      return { ok: false, why: 'the Opus encoder does not tell its lookahead' };
    return { ok: true, preSkip: head[10] | (head[11] << 8) };
  } catch (err) {
    return { ok: false, why: `Opus failed: ${err.message || err}` };
  }
}

export class OpusInput {
  constructor(rate, channels, bitrate, onPacket, onError) {
    this.rate = rate;
    this.channels = channels;
    this.frames = 0;
    this.enc = new AudioEncoder({
      output: (chunk) => {
        const bytes = new Uint8Array(chunk.byteLength);
        chunk.copyTo(bytes);
        onPacket(bytes);
      },
      error: (e) => onError(e),
    });
    this.enc.configure({
      codec: 'opus', sampleRate: rate, numberOfChannels: channels, bitrate, opus: { frameDuration: FRAME_US },
    });
  }

  encode(interleaved) {
    const n = interleaved.length / this.channels;
    const ad = new AudioData({
      format: 'f32-planar', sampleRate: this.rate, numberOfFrames: n, numberOfChannels: this.channels,
      timestamp: Math.round((this.frames / this.rate) * 1e6), data: planar(interleaved, this.channels),
    });
    this.enc.encode(ad);
    ad.close();
    this.frames += n;
  }

  flush() {
    return this.enc.state === 'configured' ? this.enc.flush() : Promise.resolve();
  }

  close() {
    if (this.enc.state !== 'closed') this.enc.close();
  }
}

export class OpusOutput {
  // onFrames(interleaved): decoded frames in order, pre-skip dropped.
  constructor(rate, channels, preSkip, onFrames, onError) {
    this.rate = rate;
    this.channels = channels;
    this.skip = preSkip;
    this.dec = new AudioDecoder({
      output: (ad) => {
        const n = ad.numberOfFrames;
        const ch = Math.min(ad.numberOfChannels, channels);
        const planes = [];
        for (let c = 0; c < ch; c++) {
          const p = new Float32Array(n);
          ad.copyTo(p, { planeIndex: c, format: 'f32-planar' });
          planes.push(p);
        }
        ad.close();
        const from = Math.min(this.skip, n);
        this.skip -= from;
        if (from === n) return;
        const out = new Float32Array((n - from) * channels);
        for (let f = from; f < n; f++)
          for (let c = 0; c < channels; c++) out[(f - from) * channels + c] = planes[Math.min(c, ch - 1)][f];
        onFrames(out);
      },
      error: (e) => onError(e),
    });
    this.dec.configure({ codec: 'opus', sampleRate: rate, numberOfChannels: channels });
  }

  decode(bytes, position) {
    this.dec.decode(new EncodedAudioChunk({
      type: 'key', timestamp: Math.round((position / this.rate) * 1e6), data: bytes,
    }));
  }

  flush() {
    return this.dec.state === 'configured' ? this.dec.flush() : Promise.resolve();
  }

  close() {
    if (this.dec.state !== 'closed') this.dec.close();
  }
}
