// worklet.js - the page's AudioWorklet module: two processors.
//
// 'demix-player' plays the stems that arrive from the server. Each stem has
// a ring buffer indexed by its output position (docs/protocol.md section 9),
// so the stems line up sample for sample whatever order their messages
// arrive in: every render quantum reads the same position P from every
// stem. Jitter buffer: playback starts (and restarts after an underrun) only
// when every stem holds at least `target` frames ahead of P; an underrun
// stops P (silence, counted) instead of letting the stems drift apart, and
// raises the target by a step up to a ceiling.
//
// Draining back after a stall. When the page stalls (a busy main thread, a
// slow network) the stems pile up once it ends: the buffer holds the stall
// on top of the target and, played at 1x, would keep it for good (input to
// speaker latency and fader lag with it). So:
//  - above target + slack (hysteresis: slack = max(40 ms, target / 4))
//    for DRAIN_HOLD_S of playback in a row, P jumps forward to leave
//    exactly `target` buffered, with an equal-power crossfade of
//    CROSSFADE_S from the old position to the new (one short, smooth edit:
//    the skipped audio is not heard);
//  - after DECAY_QUIET_S without an underrun, a target raised by underruns
//    goes back to its base, and the rule above then drains to it.
// A skip rather than playing faster: catching up 0.5 s at 2-5 % speed takes
// 10-25 s of shifted pitch and lagging faders, a crossfaded skip is over in
// 20 ms; the stream is live, so what was skipped is old anyway.
//
// Gains (already combined with
// mute and solo by the page) and the master gain ramp linearly over one
// quantum, so fader moves do not click. About every 20 ms it posts a 'tick'
// with P, the buffered frames, per-stem levels before and after the gains,
// the master level, and per-quantum peaks of each stem (before its gain) for the waveforms.
//
// 'demix-capture' turns its input (microphone) into interleaved stereo
// chunks posted to the page, which sends them to the server.
//
// Threads: runs on the audio rendering thread; talks to the page only
// through its MessagePort. Nothing allocated per quantum but the tick
// messages.

const RING_FRAMES = 1 << 19; // about 11 s at 48 kHz, per stem
const TICK_QUANTA = 8;
const DRAIN_HOLD_S = 0.5; // above target + slack this long: skip
const DRAIN_SLACK_MIN_S = 0.04;
const CROSSFADE_S = 0.02;
const DECAY_QUIET_S = 4; // no underrun this long: the target goes back

class Stem {
  constructor() {
    this.ring = new Float32Array(RING_FRAMES * 2);
    this.end = 0; // position after the last frame received
    this.last = false; // the LAST message arrived: zeros after end
  }
}

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.stems = [];
    this.gains = [];
    this.applied = [];
    this.master = 1;
    this.masterApplied = 1;
    this.position = 0;
    this.playing = false;
    this.ended = false;
    this.stopped = false;
    this.underruns = 0;
    this.overruns = 0;
    this.target = o.targetFrames || 4096;
    this.baseTarget = this.target;
    this.targetStep = o.targetStepFrames || 2048;
    this.targetMax = o.targetMaxFrames || 32768;
    this.quanta = 0;
    // draining (see the top)
    this.overFrames = 0; // played in a row above target + slack
    this.lastUnderrun = 0; // currentFrame of the last underrun
    this.skips = 0;
    this.skippedFrames = 0;
    this.xfFrames = Math.round(CROSSFADE_S * sampleRate);
    this.xfLeft = 0; // crossfade frames still to play
    this.xfFrom = 0; // the old position being faded out
    this.xfL = new Float32Array(128);
    this.xfR = new Float32Array(128);
    this.port.onmessage = (e) => this.onMessage(e.data);
    this.resetMeters(0);
  }

  resetMeters(n) {
    this.sumSq = new Float64Array(n);
    this.rawSumSq = new Float64Array(n);
    this.peak = new Float32Array(n);
    this.cols = new Float32Array(n * TICK_QUANTA);
    this.colCount = 0;
    this.masterSumSq = 0;
    this.masterPeak = 0;
    this.meterFrames = 0;
  }

  onMessage(m) {
    switch (m.type) {
      case 'config': // a new stream: forget everything
        this.stems = Array.from({ length: m.stems }, () => new Stem());
        this.gains = new Float32Array(m.stems).fill(1);
        this.applied = new Float32Array(m.stems).fill(1);
        if (m.gains) this.gains.set(m.gains);
        if (m.gains) this.applied.set(m.gains);
        if (m.targetFrames) this.target = this.baseTarget = m.targetFrames;
        this.position = 0;
        this.overFrames = 0;
        this.xfLeft = 0;
        this.skips = 0;
        this.skippedFrames = 0;
        this.playing = false;
        this.ended = false;
        this.stopped = false;
        this.underruns = 0;
        this.overruns = 0;
        this.resetMeters(m.stems);
        break;
      case 'audio':
        this.write(m.stem, m.position, m.samples);
        break;
      case 'last':
        if (this.stems[m.stem]) this.stems[m.stem].last = true;
        break;
      case 'gains':
        this.gains.set(m.gains);
        this.master = m.master;
        break;
      case 'target':
        this.target = this.baseTarget = m.targetFrames;
        break;
      case 'stop': // stop playing now; what still arrives is not played
        this.stopped = true;
        this.playing = false;
        break;
    }
  }

  maxEnd() {
    let e = 0;
    for (const s of this.stems) e = Math.max(e, s.end);
    return e;
  }

  write(i, position, samples) {
    const s = this.stems[i];
    if (!s || this.stopped) return;
    let frames = samples.length >> 1;
    let from = 0;
    if (position < s.end) { // overlap (after a reconnect): keep what we have
      from = s.end - position;
      if (from >= frames) return;
      position = s.end;
    }
    const ring = s.ring;
    for (let p = s.end; p < position; p++) { // a gap: silence
      const k = (p % RING_FRAMES) * 2;
      ring[k] = 0;
      ring[k + 1] = 0;
    }
    for (let f = from; f < frames; f++) {
      const k = ((position + f - from) % RING_FRAMES) * 2;
      ring[k] = samples[2 * f];
      ring[k + 1] = samples[2 * f + 1];
    }
    s.end = position + frames - from;
    if (s.end - this.position > RING_FRAMES - 256) { // the page fell far behind
      this.position = s.end - (RING_FRAMES >> 1);
      this.overruns++;
    }
  }

  // Frames every unfinished stem holds ahead of the play position;
  // Infinity when all stems are finished.
  available() {
    let a = Infinity;
    for (const s of this.stems) if (!s.last) a = Math.min(a, s.end - this.position);
    return a;
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const left = out[0];
    const right = out[1] || out[0];
    const n = left.length;
    const stems = this.stems;
    if (stems.length && !this.ended && !this.stopped) {
      const avail = this.available();
      let finished = true;
      for (const s of stems) finished = finished && s.last;
      if (!this.playing && (avail >= this.target || (finished && this.position < this.maxEnd())))
        this.playing = true;
      if (this.playing && avail < n && avail !== Infinity) {
        this.playing = false;
        this.underruns++;
        this.lastUnderrun = currentFrame;
        this.target = Math.min(this.target + this.targetStep, this.targetMax);
      }
      if (this.target > this.baseTarget && currentFrame - this.lastUnderrun >= DECAY_QUIET_S * sampleRate)
        this.target = this.baseTarget;
      if (this.playing) this.drain(avail, n);
      if (finished && this.position >= this.maxEnd() && this.maxEnd() > 0) {
        this.ended = true;
        this.playing = false;
        this.tick(); // the final position, before 'ended'
        this.port.postMessage({ type: 'ended', position: this.position });
      }
    }
    left.fill(0);
    if (right !== left) right.fill(0);
    if (this.playing) {
      const fading = this.xfLeft > 0;
      if (fading) this.mixOld(n);
      this.mix(left, right, n);
      if (fading) this.crossfade(left, right, n);
    }
    if (++this.quanta % TICK_QUANTA === 0) this.tick();
    return true;
  }

  // Above target + slack for DRAIN_HOLD_S in a row: jump ahead to leave
  // `target` frames, fading out from the old position (see the top).
  drain(avail, n) {
    const slack = Math.max(DRAIN_SLACK_MIN_S * sampleRate, this.target / 4);
    if (avail === Infinity || avail <= this.target + slack || this.xfLeft > 0) {
      this.overFrames = 0;
      return;
    }
    this.overFrames += n;
    if (this.overFrames < DRAIN_HOLD_S * sampleRate) return;
    const drop = avail - this.target;
    this.xfFrom = this.position;
    this.xfLeft = this.xfFrames;
    this.position += drop;
    this.skips++;
    this.skippedFrames += drop;
    this.overFrames = 0;
  }

  // The old position's mix (current gains, no meters) into xfL/xfR.
  mixOld(n) {
    if (this.xfL.length < n) {
      this.xfL = new Float32Array(n);
      this.xfR = new Float32Array(n);
    }
    const l = this.xfL;
    const r = this.xfR;
    l.fill(0, 0, n);
    r.fill(0, 0, n);
    const P = this.xfFrom;
    for (let i = 0; i < this.stems.length; i++) {
      const s = this.stems[i];
      const g = this.gains[i] * this.master;
      for (let f = 0; f < n && P + f < s.end; f++) {
        const k = ((P + f) % RING_FRAMES) * 2;
        l[f] += g * s.ring[k];
        r[f] += g * s.ring[k + 1];
      }
    }
    this.xfFrom += n;
  }

  // Equal-power crossfade: the old position out, the new one in.
  crossfade(left, right, n) {
    const done = this.xfFrames - this.xfLeft;
    for (let f = 0; f < n; f++) {
      const t = Math.min(1, (done + f + 1) / this.xfFrames);
      const win = Math.sin((t * Math.PI) / 2);
      const wout = Math.cos((t * Math.PI) / 2);
      left[f] = win * left[f] + wout * this.xfL[f];
      if (right !== left) right[f] = win * right[f] + wout * this.xfR[f];
    }
    this.xfLeft = Math.max(0, this.xfLeft - n);
  }

  mix(left, right, n) {
    const P = this.position;
    const m0 = this.masterApplied;
    const m1 = this.master;
    for (let i = 0; i < this.stems.length; i++) {
      const s = this.stems[i];
      const g0 = this.applied[i];
      const g1 = this.gains[i];
      const ring = s.ring;
      let raw = 0;
      let rsq = 0;
      let sq = 0;
      let pk = 0;
      for (let f = 0; f < n; f++) {
        const p = P + f;
        if (p >= s.end) break;
        const k = (p % RING_FRAMES) * 2;
        const l = ring[k];
        const r = ring[k + 1];
        const al = Math.abs(l);
        const ar = Math.abs(r);
        if (al > raw) raw = al;
        if (ar > raw) raw = ar;
        rsq += l * l + r * r;
        const g = g0 + ((g1 - g0) * (f + 1)) / n;
        const gl = g * l;
        const gr = g * r;
        sq += gl * gl + gr * gr;
        const gp = Math.abs(g) * (al > ar ? al : ar);
        if (gp > pk) pk = gp;
        const m = m0 + ((m1 - m0) * (f + 1)) / n;
        left[f] += m * gl;
        right[f] += m * gr;
      }
      this.applied[i] = g1;
      this.sumSq[i] += sq;
      this.rawSumSq[i] += rsq;
      if (pk > this.peak[i]) this.peak[i] = pk;
      if (this.colCount < TICK_QUANTA) this.cols[i * TICK_QUANTA + this.colCount] = raw;
    }
    this.masterApplied = m1;
    let msq = 0;
    let mpk = 0;
    for (let f = 0; f < n; f++) {
      const l = left[f];
      const r = right[f];
      msq += l * l + r * r;
      const a = Math.max(Math.abs(l), Math.abs(r));
      if (a > mpk) mpk = a;
    }
    this.masterSumSq += msq;
    if (mpk > this.masterPeak) this.masterPeak = mpk;
    this.meterFrames += n;
    this.colCount++;
    this.position = P + n;
  }

  tick() {
    const n = this.stems.length;
    const frames = this.meterFrames;
    const rms = new Float32Array(n);
    const rawRms = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      rms[i] = frames ? Math.sqrt(this.sumSq[i] / (2 * frames)) : 0;
      rawRms[i] = frames ? Math.sqrt(this.rawSumSq[i] / (2 * frames)) : 0;
    }
    const cols = new Float32Array(n * this.colCount);
    for (let i = 0; i < n; i++)
      for (let c = 0; c < this.colCount; c++) cols[i * this.colCount + c] = this.cols[i * TICK_QUANTA + c];
    const avail = this.available();
    this.port.postMessage({
      type: 'tick',
      position: this.position,
      frame: currentFrame,
      playing: this.playing,
      buffered: avail === Infinity ? 0 : avail,
      target: this.target,
      baseTarget: this.baseTarget,
      skips: this.skips,
      skippedFrames: this.skippedFrames,
      underruns: this.underruns,
      overruns: this.overruns,
      rms,
      rawRms,
      peak: this.peak.slice(),
      masterRms: frames ? Math.sqrt(this.masterSumSq / (2 * frames)) : 0,
      masterPeak: this.masterPeak,
      cols,
      colCount: this.colCount,
    });
    this.sumSq.fill(0);
    this.rawSumSq.fill(0);
    this.peak.fill(0);
    this.masterSumSq = 0;
    this.masterPeak = 0;
    this.meterFrames = 0;
    this.colCount = 0;
  }
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunkFrames = (options.processorOptions && options.processorOptions.chunkFrames) || 1024;
    this.buf = new Float32Array(this.chunkFrames * 2);
    this.fill = 0;
    this.stopped = false;
    this.port.onmessage = (e) => {
      if (e.data === 'stop') this.stopped = true;
    };
  }

  process(inputs) {
    if (this.stopped) return false;
    const input = inputs[0];
    const n = input.length ? input[0].length : 128;
    const l = input[0];
    const r = input[1] || input[0];
    for (let f = 0; f < n; f++) {
      this.buf[2 * this.fill] = l ? l[f] : 0;
      this.buf[2 * this.fill + 1] = r ? r[f] : 0;
      if (++this.fill === this.chunkFrames) {
        this.port.postMessage({ samples: this.buf, frame: currentFrame }, [this.buf.buffer]);
        this.buf = new Float32Array(this.chunkFrames * 2);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor('demix-player', Player);
registerProcessor('demix-capture', Capture);
