// app.js - the demo page: picks a source (the bundled demo song, a local
// file, or the microphone), streams it to demixd at real-time pace over
// one WebSocket (docs/protocol.md), plays the four stems that come back
// through the 'demix-player' AudioWorklet (worklet.js) and mixes them live
// (mixer.js); export as WAV afterwards (wav.js).
//
// Design:
// - Everything is PCM float32 at the AudioContext's rate, stereo, both
//   ways. The server resamples to and from the model's rate.
// - A file is sent in 1024-frame messages paced by the AudioContext clock
//   (the clock the stems are played by); the microphone is sent as the
//   'demix-capture' worklet delivers it.
// - Stems are placed by output position, so they stay aligned. A
//   connection that drops (server restart, network) is retried with
//   backoff and jitter, a bounded number of times (protocol.js RESUME,
//   docs/protocol.md section 7.1). For a file the new session re-sends a
//   tail of input (1 s, snapped onto the model's hop grid) before the
//   first position every stem lacks, to re-prime the model's state, and
//   the output for that tail is dropped: the stems go on with no gap and
//   no repeat. The microphone goes on at the current position (its input
//   during the outage is gone). Positions on the page are "global":
//   connection base + server position.
// - State for tests and for people is mirrored into the DOM: main#app
//   data-state, data-input-frames, data-played-frames, data-buffered-ms,
//   data-target-ms, data-base-target-ms, data-skips, data-sessions, ...;
//   each strip
//   data-frames-received, data-messages-received, data-level (RMS after
//   gain over the last ~20 ms); #master data-level (RMS of the output).
//
// Threads: the page's main thread; audio runs in worklet.js.

import * as proto from './protocol.js';
import { Mixer, PRESETS, GAIN_MAX, MASTER_MAX, gainText } from './mixer.js';
import { Waveform } from './waveform.js';
import { wavBlob, StemRecorder, renderMix } from './wav.js';
import { probeOpus, OpusInput, OpusOutput } from './opus.js';

const DEFAULT_STEMS = ['drums', 'bass', 'vocals', 'other'];
const DEMO = { url: 'demo/potassium.opus', name: 'potassium' };
const CHANNELS = 2;
const RATE = 48000; // asked of the AudioContext: Opus runs at it
const OPUS_BITRATE = 128000; // per stream, stereo
const CHUNK_FRAMES = 1024; // input message: about 21 ms
const PACE_MS = 10;
const STATS_MS = 1000;
const UI_MS = 100;
const JITTER_MS = 120; // initial jitter buffer target; grows on underruns
const JITTER_STEP_MS = 60;
const JITTER_MAX_MS = 1000;
const RECORD_MAX_S = 600; // export keeps at most 10 minutes per stem
const METER_FLOOR_DB = -60;

const $ = (id) => document.getElementById(id);
const app = $('app');

const STATE_TEXT = {
  idle: 'Ready', loading: 'Loading the source…', connecting: 'Connecting…',
  streaming: 'Streaming', ending: 'Finishing…', finished: 'Finished', stopped: 'Stopped',
  reconnecting: 'Reconnecting…', error: 'Error',
};

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function interleave(buffer, from, frames) {
  const l = buffer.getChannelData(0);
  const r = buffer.numberOfChannels > 1 ? buffer.getChannelData(1) : l;
  const out = new Float32Array(frames * 2);
  for (let f = 0; f < frames; f++) {
    out[2 * f] = l[from + f];
    out[2 * f + 1] = r[from + f];
  }
  return out;
}

// One WebSocket session: start, audio in, stems out, stats, summary.
// With opts.opus, audio goes both ways as Opus packets (opus.js): input
// through one encoder, each stem through its own decoder, and the summary
// is handed on only when every decoder has flushed.
class Connection {
  constructor(url, opts, handlers) {
    this.h = handlers;
    this.rate = opts.rate;
    this.opus = opts.opus;
    this.seq = 0;
    this.sentFrames = 0; // input frames sent on this connection
    this.sendLog = []; // [first input frame of a message, its frames, time sent]
    this.logHead = 0;
    this.ready = null;
    this.summary = null;
    this.serverError = null;
    this.endSent = false;
    this.encoder = null;
    this.decoders = [];
    this.outFrames = []; // decoded frames delivered per stem (Opus)
    this.ws = new WebSocket(url, proto.SUBPROTOCOL);
    this.ws.binaryType = 'arraybuffer';
    const token = proto.tokenFromHash(location.hash);
    this.ws.onopen = () => this.ws.send(proto.startMessage(opts.rate, CHANNELS, opts.stems, opts.opus, token));
    this.ws.onmessage = (e) => this.onMessage(e.data);
    this.ws.onclose = (e) => this.h.onClose(this, e);
  }

  onMessage(data) {
    if (typeof data === 'string') {
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      if (m.type === 'ready') {
        this.ready = m;
        if (this.opus) this.openCodecs(m);
        this.h.onReady(this, m);
      } else if (m.type === 'stats') {
        this.h.onStats(this, m);
      } else if (m.type === 'summary') {
        this.summary = m;
        Promise.all(this.decoders.map((d) => d.flush()))
          .catch(() => {})
          .then(() => this.h.onSummary(this, m));
      } else if (m.type === 'error') {
        this.serverError = m;
      }
      return;
    }
    const m = proto.parseAudioOut(data, CHANNELS);
    if (m instanceof Error) {
      console.warn('demixd page: ' + m.message);
      return;
    }
    if (m.packet) {
      const d = this.decoders[m.stem];
      if (d) d.decode(m.packet, m.position);
    } else {
      this.h.onAudio(this, { stem: m.stem, position: m.position, frames: m.frames, samples: m.samples });
    }
  }

  openCodecs(ready) {
    const fail = (e) => this.h.onCodecError(this, e);
    this.encoder = new OpusInput(this.rate, CHANNELS, this.opus.bitrate, (packet) => {
      if (this.isOpen()) this.ws.send(proto.audioInOpus(this.seq++, packet));
    }, fail);
    this.decoders = ready.model.sources.map((_, i) => new OpusOutput(this.rate, CHANNELS, ready.output.pre_skip, (samples) => {
      const position = this.outFrames[i];
      this.outFrames[i] += samples.length / CHANNELS;
      this.h.onAudio(this, { stem: i, position, frames: samples.length / CHANNELS, samples });
    }, fail));
    this.outFrames = ready.model.sources.map(() => 0);
  }

  get live() {
    return this.isOpen() && this.ready !== null;
  }

  isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  sendAudio(samples) {
    if (!this.live || this.endSent) return false;
    if (this.encoder) this.encoder.encode(samples);
    else this.ws.send(proto.audioIn(this.seq++, samples));
    this.sendLog.push([this.sentFrames, samples.length / CHANNELS, performance.now()]);
    this.sentFrames += samples.length / CHANNELS;
    return true;
  }

  // When input frame `pos` was produced, for a source at real-time pace:
  // its message left when its last frame was there (monotonic use).
  producedAt(pos, rate) {
    const log = this.sendLog;
    while (this.logHead + 1 < log.length && log[this.logHead + 1][0] <= pos) this.logHead++;
    if (this.logHead > 8192) {
      log.splice(0, this.logHead);
      this.logHead = 0;
    }
    const e = log[this.logHead];
    if (!e || pos < e[0] || pos >= e[0] + e[1]) return null;
    return e[2] - ((e[0] + e[1] - 1 - pos) / rate) * 1000;
  }

  // No more input: with Opus, the encoder's last packets go first.
  end() {
    if (!this.live || this.endSent) return;
    this.endSent = true;
    const send = () => {
      if (this.isOpen()) this.ws.send(proto.END_MESSAGE);
    };
    if (this.encoder) this.encoder.flush().catch(() => {}).then(send);
    else send();
  }

  stats() {
    if (this.isOpen()) this.ws.send(proto.STATS_MESSAGE);
  }

  close() {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'client');
  }

  dispose() {
    this.close();
    if (this.encoder) this.encoder.close();
    for (const d of this.decoders) d.close();
  }
}

class Page {
  constructor() {
    this.ctx = null;
    this.player = null;
    this.run = null;
    this.lastTick = null;
    this.demoBuffer = null;
    this.file = { key: null, buffer: null };
    this.meters = [];
    this.masterMeter = { db: METER_FLOOR_DB, peak: METER_FLOOR_DB, level: 0 };
    this.opusInfo = null;
    this.held = null; // testStall: the player's feed held back
    this.buildStrips(DEFAULT_STEMS);
    this.bind();
    this.opusProbe = probeOpus(RATE, CHANNELS).then((r) => {
      this.opusInfo = r;
      this.codecUi();
      return r;
    });
    setInterval(() => this.updateUi(), UI_MS);
    const frame = () => {
      for (const w of this.waves) w.draw();
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    this.setState('idle');
  }

  // ---- building the mixer ------------------------------------------------

  buildStrips(names) {
    this.names = names.slice();
    this.mixer = new Mixer(names);
    const holder = $('strips');
    holder.replaceChildren();
    this.strips = [];
    this.waves = [];
    this.meters = [];
    const tpl = $('strip-template');
    names.forEach((name, i) => {
      const el = tpl.content.firstElementChild.cloneNode(true);
      el.dataset.stem = name;
      el.classList.add(`stem-${/^[a-z]+$/.test(name) ? name : 'x'}`, `stem-i${i % 8}`);
      el.querySelector('.name').textContent = name;
      el.querySelector('.fader-label').textContent = `${name} gain`;
      const fader = el.querySelector('input[type=range]');
      fader.id = `gain-${i}`;
      fader.max = String(GAIN_MAX);
      fader.addEventListener('input', () => {
        this.mixer.stems[i].gain = Number(fader.value);
        this.mixerChanged();
      });
      const mute = el.querySelector('.mute');
      const solo = el.querySelector('.solo');
      mute.setAttribute('aria-label', `Mute ${name}`);
      solo.setAttribute('aria-label', `Solo ${name}`);
      mute.addEventListener('click', () => this.toggle(i, 'mute'));
      solo.addEventListener('click', () => this.toggle(i, 'solo'));
      holder.append(el);
      this.strips.push({
        el, fader, mute, solo,
        db: el.querySelector('.db'),
        fill: el.querySelector('.fill'),
        peak: el.querySelector('.peak'),
      });
      this.waves.push(new Waveform(el.querySelector('canvas')));
      this.meters.push({ db: METER_FLOOR_DB, peak: METER_FLOOR_DB, level: 0, raw: 0 });
    });
    // export buttons: the mix and one per stem
    const ex = $('export-buttons');
    for (const b of ex.querySelectorAll('button[data-export]:not([data-export=mix])')) b.remove();
    names.forEach((name, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.export = String(i);
      b.textContent = `${name} (WAV)`;
      b.disabled = true;
      ex.append(b);
    });
    this.buildPresets();
    this.mixerChanged();
  }

  buildPresets() {
    const holder = $('presets');
    holder.replaceChildren();
    this.presetButtons = PRESETS.map((p) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.preset = p.id;
      b.textContent = p.label;
      b.setAttribute('aria-pressed', 'false');
      b.setAttribute('aria-keyshortcuts', p.key);
      b.title = `${p.label} (key ${p.key.toUpperCase()})`;
      b.disabled = !this.mixer.available(p);
      b.addEventListener('click', () => this.preset(p.id));
      holder.append(b);
      return b;
    });
  }

  toggle(i, what) {
    const s = this.mixer.stems[i];
    if (!s) return;
    s[what] = !s[what];
    this.mixerChanged();
  }

  preset(id) {
    if (this.mixer.apply(id)) this.mixerChanged();
  }

  mixerChanged() {
    const eff = this.mixer.effective();
    this.mixer.stems.forEach((s, i) => {
      const st = this.strips[i];
      st.mute.setAttribute('aria-pressed', String(s.mute));
      st.solo.setAttribute('aria-pressed', String(s.solo));
      st.fader.value = String(s.gain);
      st.fader.setAttribute('aria-valuetext', gainText(s.gain));
      st.db.textContent = gainText(s.gain);
      st.el.dataset.gain = eff[i].toFixed(3);
      st.el.classList.toggle('silent', eff[i] === 0);
      this.waves[i].setDim(eff[i] === 0);
    });
    const active = this.mixer.active();
    for (const b of this.presetButtons) b.setAttribute('aria-pressed', String(b.dataset.preset === active));
    $('master-gain').value = String(this.mixer.master);
    $('master-gain').setAttribute('aria-valuetext', gainText(this.mixer.master));
    $('master-db').textContent = gainText(this.mixer.master);
    if (this.player) this.player.port.postMessage({ type: 'gains', gains: eff, master: this.mixer.master });
  }

  // ---- controls ------------------------------------------------------------

  bind() {
    for (const r of document.querySelectorAll('input[name=source]'))
      r.addEventListener('change', () => this.sourceChanged());
    $('file').addEventListener('change', () => {
      document.querySelector('input[name=source][value=file]').checked = true;
      this.sourceChanged();
    });
    $('play').addEventListener('click', () => this.play());
    $('stop').addEventListener('click', () => this.stop());
    const master = $('master-gain');
    master.max = String(MASTER_MAX);
    master.addEventListener('input', () => {
      this.mixer.master = Number(master.value);
      this.mixerChanged();
    });
    $('export-buttons').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-export]');
      if (b && !b.disabled) this.exportWav(b.dataset.export);
    });
    document.addEventListener('keydown', (e) => this.key(e));
    $('codec').addEventListener('change', () => this.codecUi());
    this.sourceChanged();
    this.codecUi();
  }

  codecUi() {
    const sel = $('codec');
    const opus = sel.querySelector('option[value=opus]');
    const info = this.opusInfo;
    if (info && !info.ok) {
      opus.disabled = true;
      sel.value = 'pcm';
    }
    $('codec-note').textContent = !info ? 'Checking for Opus…'
      : !info.ok ? `Opus is off: ${info.why}.`
        : sel.value === 'opus' ? 'Opus both ways, 128 kbit/s per stream.' : 'Exact samples; about 15 Mbit/s.';
    app.dataset.codec = sel.value;
  }

  sourceChanged() {
    const kind = this.sourceKind();
    $('file-row').hidden = kind !== 'file';
    app.dataset.source = kind;
  }

  sourceKind() {
    return document.querySelector('input[name=source]:checked').value;
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t instanceof HTMLSelectElement || (t instanceof HTMLInputElement && (t.type === 'text' || t.type === 'file'))) return;
    const k = e.key.toLowerCase();
    if (k === 'p') {
      if (this.running()) this.stop();
      else this.play();
    } else if (/^[1-8]$/.test(e.code.replace('Digit', ''))) {
      const i = Number(e.code.replace('Digit', '')) - 1;
      this.toggle(i, e.shiftKey ? 'solo' : 'mute');
    } else {
      const p = PRESETS.find((x) => x.key === k);
      if (!p) return;
      this.preset(p.id);
    }
    e.preventDefault();
  }

  // ---- state ---------------------------------------------------------------

  setState(state, message) {
    app.dataset.state = state;
    $('st-state').textContent = STATE_TEXT[state] || state;
    const conn = $('conn');
    const connState = { connecting: 'connecting', streaming: 'open', ending: 'open', reconnecting: 'reconnecting', error: 'error' }[state] || 'idle';
    conn.dataset.conn = connState;
    $('conn-text').textContent = {
      idle: 'Not connected', connecting: 'Connecting…', open: 'Connected', reconnecting: 'Connection lost', error: 'Error',
    }[connState];
    if (message !== undefined) this.say(message);
    const running = this.running();
    $('play').disabled = running || state === 'loading';
    $('stop').disabled = !running;
    for (const r of document.querySelectorAll('input[name=source], #file, #codec')) r.disabled = running || state === 'loading';
    const exportable = !running && state !== 'loading' && this.hasRecording();
    for (const b of document.querySelectorAll('#export-buttons button')) b.disabled = !exportable;
    $('export-hint').textContent = exportable
      ? 'Download the mix as the mixer sets it now, or one stem.'
      : 'After playback: the mix as the mixer sets it, and each stem, as WAV.';
  }

  say(text, kind = 'info') {
    const m = $('message');
    m.textContent = text || '';
    m.hidden = !text;
    m.dataset.kind = kind;
  }

  running() {
    return this.run !== null && !this.run.done;
  }

  hasRecording() {
    return !!(this.lastRun && this.lastRun.recorders.some((r) => r.end > 0));
  }

  // ---- audio ---------------------------------------------------------------

  // Stems and LAST flags to the player, in order (testStall may hold them).
  toPlayer(m) {
    if (this.held) this.held.push(m);
    else this.player.port.postMessage(m);
  }

  // Test hook (tests/browser): hold the player's feed for `ms`, then hand
  // it over at once, as a main thread busy elsewhere does; the jitter
  // buffer must drain back to its target afterwards (worklet.js).
  testStall(ms) {
    if (this.held) return;
    this.held = [];
    setTimeout(() => {
      const held = this.held;
      this.held = null;
      for (const m of held) this.player.port.postMessage(m);
    }, ms);
  }

  // The server's session count, after a run (its stats replies stop with
  // it): GET /v1/health, which needs no token. Asked again a moment later,
  // as the server frees the slot when the close completes.
  refreshSessions() {
    const ask = () => !this.running() && fetch('/v1/health', { cache: 'no-store' })
      .then((r) => (r.ok || r.status === 503 ? r.json() : null))
      .then((h) => {
        if (!h || typeof h.sessions !== 'number' || this.running()) return;
        $('st-sessions').textContent = `${h.sessions} of ${h.max_sessions}`;
        app.dataset.sessions = String(h.sessions);
      })
      .catch(() => {});
    ask();
    setTimeout(ask, 500);
    setTimeout(ask, 1500);
  }

  async ensureAudio() {
    if (!this.ctx) {
      let ctx;
      try {
        ctx = new AudioContext({ latencyHint: 'interactive', sampleRate: RATE });
      } catch {
        ctx = new AudioContext({ latencyHint: 'interactive' }); // the device's rate: PCM only
      }
      this.ctx = ctx;
      if (!ctx.audioWorklet) throw new Error('This browser has no AudioWorklet; the page needs a current Chrome, Firefox or Safari.');
      await ctx.audioWorklet.addModule(new URL('worklet.js', import.meta.url));
      const ms = (x) => Math.round((x * ctx.sampleRate) / 1000);
      this.jitter = { target: ms(JITTER_MS), step: ms(JITTER_STEP_MS), max: ms(JITTER_MAX_MS) };
      this.player = new AudioWorkletNode(ctx, 'demix-player', {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [2],
        processorOptions: {
          targetFrames: this.jitter.target, targetStepFrames: this.jitter.step, targetMaxFrames: this.jitter.max,
        },
      });
      this.player.connect(ctx.destination);
      this.player.port.onmessage = (e) => this.onPlayer(e.data);
    }
    if (this.ctx.state !== 'running') await this.ctx.resume();
  }

  async loadSource(kind) {
    const ctx = this.ctx;
    if (kind === 'demo') {
      if (!this.demoBuffer) {
        const res = await fetch(DEMO.url);
        if (!res.ok) throw new Error(`The demo song could not be loaded (HTTP ${res.status}).`);
        this.demoBuffer = await ctx.decodeAudioData(await res.arrayBuffer());
      }
      return { kind, name: DEMO.name, buffer: this.demoBuffer };
    }
    if (kind === 'file') {
      const f = $('file').files[0];
      if (!f) throw new Error('Choose an audio file first.');
      const key = `${f.name}/${f.size}/${f.lastModified}`;
      if (this.file.key !== key) {
        let buffer;
        try {
          buffer = await ctx.decodeAudioData(await f.arrayBuffer());
        } catch (err) {
          throw new Error(`This browser cannot decode “${f.name}” (${err.message || err}).`);
        }
        this.file = { key, buffer };
      }
      const name = f.name.replace(/\.[^.]*$/, '').replace(/[^\w.-]+/g, '_') || 'file';
      return { kind, name, buffer: this.file.buffer };
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia)
      throw new Error('The microphone needs a secure page: open it over https or on localhost.');
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      throw new Error(err && err.name === 'NotAllowedError'
        ? 'The microphone was not allowed; allow it in the address bar and press Play again.'
        : `No microphone could be opened (${(err && err.message) || err}).`);
    }
    return { kind, name: 'microphone', stream };
  }

  async play() {
    if (this.running()) return;
    const kind = this.sourceKind();
    this.setState('loading', '');
    let src;
    try {
      await this.ensureAudio();
      src = await this.loadSource(kind);
    } catch (err) {
      this.setState('error', (err && err.message) || String(err));
      return;
    }
    const rate = this.ctx.sampleRate;
    const info = await this.opusProbe;
    const useOpus = $('codec').value === 'opus' && info.ok && rate === RATE;
    const run = {
      ...src,
      rate,
      opus: useOpus ? { preSkip: info.preSkip, bitrate: OPUS_BITRATE } : null,
      total: src.buffer ? src.buffer.length : Infinity,
      stems: this.names.slice(), // what start asks for
      triedNames: false,
      configured: false,
      conn: null,
      base: 0, // global position of this connection's position 0
      resumeAt: 0, // after a reconnect: where the stems go on
      cursor: 0, // global input frames sent (a file)
      inputFrames: 0,
      recorders: [],
      received: [],
      messages: [],
      ends: [],
      latencyMs: null,
      announcedMs: null,
      stats: null,
      summary: null,
      lost: false,
      attempts: 0,
      reconnects: 0,
      stopRequested: false,
      playerEnded: false,
      done: false,
      timers: [],
    };
    this.run = run;
    this.lastRun = run;
    this.lastTick = null;
    for (const w of this.waves) w.clear();
    for (const st of this.strips) {
      st.el.dataset.framesReceived = '0';
      st.el.dataset.messagesReceived = '0';
    }
    for (const k of ['reconnects', 'inputFrames', 'playedFrames', 'underruns']) app.dataset[k] = '0';
    app.dataset.latencyMs = '';
    app.dataset.session = '';
    if (run.stream) this.startCapture(run);
    this.connect(run);
  }

  startCapture(run) {
    const ctx = this.ctx;
    run.micSource = ctx.createMediaStreamSource(run.stream);
    run.capture = new AudioWorkletNode(ctx, 'demix-capture', {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 2,
      channelCountMode: 'explicit',
      channelInterpretation: 'speakers',
      processorOptions: { chunkFrames: CHUNK_FRAMES },
    });
    run.micSource.connect(run.capture);
    run.capture.port.onmessage = (e) => {
      const c = run.conn;
      if (run.done || !c || !c.sendAudio(e.data.samples)) return;
      run.inputFrames = run.base + c.sentFrames;
    };
  }

  stopCapture(run) {
    if (run.capture) {
      run.capture.port.postMessage('stop');
      run.micSource.disconnect();
      run.capture = null;
    }
    if (run.stream) for (const t of run.stream.getTracks()) t.stop();
  }

  connect(run) {
    const url = proto.streamUrl(location);
    const h = {
      onReady: (c, m) => c === run.conn && this.onReady(run, m),
      onAudio: (c, m) => c === run.conn && this.onAudio(run, c, m),
      onStats: (c, m) => {
        if (c === run.conn) run.stats = m;
      },
      onSummary: (c, m) => {
        if (c !== run.conn) return;
        run.summary = m;
        if (!run.buffer) // Opus runs past the end: cut every stem there
          for (const r of run.recorders) r.truncate(run.base + m.output_frames);
        // the stream is over: the player may drain its buffers to the end.
        // (Not at LAST flags: a server that shuts down sends them too, and
        // then the page reconnects and goes on.)
        run.recorders.forEach((_, i) => this.toPlayer({ type: 'last', stem: i }));
      },
      onClose: (c, e) => c === run.conn && this.onClose(run, c, e),
      onCodecError: (c, e) => {
        if (c === run.conn && !run.done)
          this.finish(run, 'error', `Opus failed in this browser (${e.message || e}); choose PCM and press Play again.`);
      },
    };
    if (run.conn) run.conn.dispose();
    if (!run.lost) this.setState('connecting');
    try {
      run.conn = new Connection(url, { rate: run.rate, stems: run.stems, opus: run.opus }, h);
    } catch (err) {
      this.finish(run, 'error', `The WebSocket could not be opened: ${err.message || err}`);
    }
  }

  onReady(run, m) {
    const sources = m.model.sources;
    if (!run.configured) {
      if (sources.join() !== this.names.join()) this.buildStrips(sources);
      run.recorders = sources.map(() => new StemRecorder(RECORD_MAX_S * run.rate));
      run.received = sources.map(() => 0);
      run.messages = sources.map(() => 0);
      run.ends = sources.map(() => 0);
      this.player.port.postMessage({
        type: 'config', stems: sources.length, gains: this.mixer.effective(), targetFrames: this.jitter.target,
      });
      this.mixerChanged();
      run.configured = true;
    } else if (sources.join() !== this.names.join()) {
      this.finish(run, 'error', 'The server came back with a different model; press Play to start again.');
      return;
    }
    run.announcedMs = m.latency_ms;
    run.model = m.model;
    run.session = m.session;
    app.dataset.session = m.session;
    run.attempts = 0;
    if (run.lost) {
      run.lost = false;
      run.reconnects++;
      app.dataset.reconnects = String(run.reconnects);
      this.setState('streaming', `Reconnected: the stream goes on from ${clock(run.resumeAt / run.rate)}.`);
    } else {
      this.setState('streaming', '');
    }
    const c = run.conn;
    if (run.buffer) {
      run.cursor = run.base;
      // the re-primed tail before resumeAt goes out at once, the rest paced
      run.t0 = this.ctx.currentTime - run.resumeAt / run.rate;
      run.timers.push(setInterval(() => this.pace(run, c), PACE_MS));
    }
    c.stats();
    run.timers.push(setInterval(() => c.stats(), STATS_MS));
  }

  pace(run, c) {
    if (run.done || c !== run.conn || !c.live || c.endSent) return;
    const now = this.ctx.currentTime;
    const target = Math.min(run.total, Math.floor((now - run.t0) * run.rate));
    while (run.cursor < target && (target - run.cursor >= CHUNK_FRAMES || target === run.total)) {
      const n = Math.min(CHUNK_FRAMES, target - run.cursor);
      c.sendAudio(interleave(run.buffer, run.cursor, n));
      run.cursor += n;
    }
    run.inputFrames = run.cursor;
    if (run.cursor >= run.total) {
      c.end();
      this.setState('ending');
    }
  }

  onAudio(run, c, m) {
    const i = m.stem;
    if (i >= run.recorders.length) return;
    let position = run.base + m.position;
    let samples = new Float32Array(m.samples); // a copy: the recorder keeps it
    const had = run.ends[i] - position; // a re-primed tail after a reconnect
    if (had > 0) {
      if (had >= m.frames) return;
      samples = samples.subarray(had * CHANNELS);
      position += had;
      m = { ...m, frames: m.frames - had };
    }
    if (run.buffer && position + m.frames > run.total) { // Opus runs past the end
      if (position >= run.total) return;
      samples = samples.subarray(0, (run.total - position) * CHANNELS);
      m = { ...m, frames: run.total - position };
    }
    run.recorders[i].add(position, samples);
    this.toPlayer({ type: 'audio', stem: i, position, samples });
    run.received[i] += m.frames;
    run.messages[i]++;
    run.ends[i] = Math.max(run.ends[i], position + m.frames);
    if (run.buffer && run.ends[i] >= run.total) // a file's stem is complete: no need to wait for the summary
      this.toPlayer({ type: 'last', stem: i });
    if (i === 0) {
      const t = c.producedAt(m.position + m.frames - 1, run.rate);
      if (t !== null) {
        const ms = performance.now() - t;
        run.latencyMs = run.latencyMs === null ? ms : 0.9 * run.latencyMs + 0.1 * ms;
      }
    }
  }

  onClose(run, c, e) {
    this.clearTimers(run);
    if (run.done) return;
    if (c.summary && e.code === 1000) { // the normal end of a stream
      if (run.stopRequested) this.finish(run, 'stopped', 'Stopped.');
      else if (run.playerEnded) this.finishPlayed(run);
      else this.setState('ending');
      return;
    }
    if (run.stopRequested) {
      this.finish(run, 'stopped', 'Stopped.');
      return;
    }
    const err = c.serverError;
    if (err && err.code === 'unknown_stem' && !run.triedNames && !run.configured) {
      // the model has other sources: the message names them
      const m = /has (.+)\.$/.exec(err.message || '');
      if (m) {
        run.triedNames = true;
        run.stems = m[1].split(/,\s*|\s+and\s+/).filter(Boolean);
        this.connect(run);
        return;
      }
    }
    if (err && proto.FATAL_CODES.has(err.code)) {
      this.finish(run, 'error', `The server refused the stream: ${err.message}`);
      return;
    }
    this.reconnectLater(run, err ? err.message : proto.closeText(e.code, e.reason));
  }

  reconnectLater(run, why) {
    if (!run.lost) { // a new outage
      run.lost = true;
      run.attempts = 0;
      run.outageStart = performance.now();
    }
    run.attempts++;
    const elapsed = (performance.now() - run.outageStart) / 1000;
    if (run.attempts > proto.RESUME.attempts || elapsed >= proto.RESUME.waitS) {
      this.finish(run, 'error', `The server went away (${why}) and did not come back (${run.attempts - 1} attempts in ${Math.round(elapsed)} s); press Play to start again.`);
      return;
    }
    const delay = Math.min(proto.backoffDelay(run.attempts), proto.RESUME.waitS - elapsed);
    if (run.configured) {
      const minEnd = Math.min(...run.ends);
      const maxEnd = Math.max(...run.ends);
      if (run.buffer) {
        if (minEnd >= run.total) { // everything arrived but the goodbye
          run.recorders.forEach((_, i) => this.toPlayer({ type: 'last', stem: i }));
          run.summary = run.summary || { synthetic: true };
          this.setState('ending');
          run.lost = false;
          return;
        }
        // re-send a tail before the first position a stem lacks
        const m = run.model;
        const grid = m ? proto.resumeGrid(run.rate, m.sample_rate, m.hop) : 1;
        run.resumeAt = minEnd;
        run.base = proto.resumeBase(minEnd, proto.RESUME.tailMs, run.rate, grid);
      } else {
        run.base = Math.max(maxEnd, this.lastTick ? this.lastTick.position : 0);
        run.resumeAt = run.base;
      }
    }
    const where = run.configured ? ` It will go on from ${clock(run.resumeAt / run.rate)}.` : '';
    this.setState('reconnecting',
      `The server went away (${why}). Reconnecting in ${delay.toFixed(1)} s, attempt ${run.attempts} of ${proto.RESUME.attempts}.${where}`);
    run.timers.push(setTimeout(() => {
      if (!run.done) this.connect(run);
    }, delay * 1000));
  }

  clearTimers(run) {
    for (const t of run.timers) {
      clearInterval(t);
      clearTimeout(t);
    }
    run.timers = [];
  }

  stop() {
    const run = this.run;
    if (!run || run.done) return;
    run.stopRequested = true;
    this.stopCapture(run);
    this.player.port.postMessage({ type: 'stop' });
    const c = run.conn;
    if (c && c.live && !c.endSent) {
      this.clearTimers(run);
      c.end(); // the server flushes what it has; the export keeps it
      this.setState('ending');
      run.timers.push(setTimeout(() => { // a server that never answers
        if (!run.done) this.finish(run, 'stopped', 'Stopped.');
      }, 5000));
    } else {
      this.finish(run, 'stopped', 'Stopped.');
    }
  }

  finishPlayed(run) {
    const s = run.summary && !run.summary.synthetic ? run.summary : null;
    const text = s
      ? `Finished: ${s.duration_s.toFixed(1)} s separated in ${s.wall_s.toFixed(1)} s, ${s.late_hops} late hops. Download the mix or the stems below.`
      : 'Finished. Download the mix or the stems below.';
    this.finish(run, 'finished', text);
  }

  finish(run, state, message) {
    run.done = true;
    run.stats = null; // stale: the count comes from /v1/health now
    this.clearTimers(run);
    this.stopCapture(run);
    if (run.conn) run.conn.dispose();
    if (state === 'error') this.player && this.player.port.postMessage({ type: 'stop' });
    const truncated = run.recorders.some((r) => r.truncated);
    this.setState(state, truncated ? `${message} The export keeps the first ${RECORD_MAX_S / 60} minutes.` : message);
    if (state === 'error') $('message').dataset.kind = 'error';
    this.refreshSessions();
  }

  onPlayer(m) {
    if (m.type === 'tick') {
      this.lastTick = m;
      const run = this.run;
      if (m.colCount && run && run.configured)
        this.waves.forEach((w, i) => i < m.rms.length && w.push(m.cols, i * m.colCount, m.colCount));
      this.meters.forEach((mt, i) => {
          if (i < m.rms.length) {
          this.meterIn(mt, m.rms[i], m.peak[i]);
          mt.raw = m.rawRms[i];
        }
      });
      this.meterIn(this.masterMeter, m.masterRms, m.masterPeak);
    } else if (m.type === 'ended') {
      const run = this.run;
      if (!run || run.done || run.stopRequested) return;
      run.playerEnded = true;
      // The meter ticks are rendered at frame rate and may trail the player:
      // the end position is published here so the count is final at 'finished'.
      app.dataset.playedFrames = String(m.position);
      if (run.summary) this.finishPlayed(run);
    }
  }

  meterIn(mt, rms, peak) {
    const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
    const pdb = peak > 0 ? 20 * Math.log10(peak) : -Infinity;
    mt.level = rms;
    mt.db = Math.max(db, mt.db - 1.2, METER_FLOOR_DB); // about 50 dB/s fall
    mt.peak = Math.max(pdb, mt.peak - 0.4, METER_FLOOR_DB);
  }

  // ---- the DOM, ten times a second ------------------------------------------

  updateUi() {
    const run = this.run;
    const tick = this.lastTick;
    const frac = (db) => Math.min(1, Math.max(0, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
    this.strips.forEach((st, i) => {
      const mt = this.meters[i];
      st.fill.style.clipPath = `inset(0 ${(100 - frac(mt.db) * 100).toFixed(1)}% 0 0)`;
      st.peak.style.left = `${(frac(mt.peak) * 100).toFixed(1)}%`;
      st.el.dataset.level = mt.level.toPrecision(4);
      st.el.dataset.rawLevel = (mt.raw || 0).toPrecision(4);
      if (run && run.configured) {
        st.el.dataset.framesReceived = String(run.received[i] || 0);
        st.el.dataset.messagesReceived = String(run.messages[i] || 0);
      }
    });
    const mm = this.masterMeter;
    const master = $('master');
    master.querySelector('.fill').style.clipPath = `inset(0 ${(100 - frac(mm.db) * 100).toFixed(1)}% 0 0)`;
    master.querySelector('.peak').style.left = `${(frac(mm.peak) * 100).toFixed(1)}%`;
    master.dataset.level = mm.level.toPrecision(4);
    if (!run) return;
    app.dataset.inputFrames = String(run.inputFrames);
    if (tick) {
      app.dataset.playedFrames = String(tick.position);
      app.dataset.underruns = String(tick.underruns);
      $('st-underruns').textContent = String(tick.underruns);
      const ms = (f) => `${Math.round((f / run.rate) * 1000)} ms`;
      $('st-buffer').textContent = `${ms(tick.buffered)} of ${ms(tick.target)}`;
      const msn = (f) => String(Math.round((f / run.rate) * 1000));
      app.dataset.bufferedMs = msn(tick.buffered);
      app.dataset.targetMs = msn(tick.target);
      app.dataset.baseTargetMs = msn(tick.baseTarget);
      app.dataset.skips = String(tick.skips);
      const t = tick.position / run.rate;
      $('time').textContent = run.buffer ? `${clock(t)} / ${clock(Math.round(run.total / run.rate))}` : clock(t);
      $('progress').value = run.buffer ? Math.min(1, tick.position / run.total) : 0;
      if (tick.playing && !run.done) {
        const out = (this.ctx.outputLatency || this.ctx.baseLatency || 0) * 1000;
        $('st-total').textContent = `${Math.round(((run.inputFrames - tick.position) / run.rate) * 1000 + out)} ms`;
      }
    }
    $('st-reconnects').textContent = String(run.reconnects);
    if (run.announcedMs !== null) $('st-announced').textContent = `${run.announcedMs.toFixed(1)} ms`;
    if (run.latencyMs !== null) {
      $('st-measured').textContent = `${Math.round(run.latencyMs)} ms`;
      app.dataset.latencyMs = run.latencyMs.toFixed(1);
    }
    if (run.model) {
      const full = run.model.name || 'model';
      const name = full.length > 28 ? `${full.slice(0, 27)}…` : full;
      const el = $('st-server');
      el.textContent = `${name}, ${run.model.sample_rate / 1000} kHz`;
      el.title = `${full}; session ${run.session}`;
    }
    const s = run.stats;
    if (s) {
      $('st-sessions').textContent = `${s.sessions} of ${s.max_sessions}`;
      app.dataset.sessions = String(s.sessions);
      if (s.step_ms) $('st-step').textContent = `${s.step_ms.p50.toFixed(2)} / ${s.step_ms.p99.toFixed(2)} ms`;
      if (typeof s.batch_mean === 'number') $('st-batch').textContent = s.batch_mean.toFixed(2);
      if (s.session) $('st-late').textContent = `${s.session.late_hops} of ${s.session.hops}`;
    }
  }

  // ---- export ------------------------------------------------------------------

  exportWav(which) {
    const run = this.lastRun;
    if (!run || !run.recorders.length) return;
    let samples;
    let name;
    if (which === 'mix') {
      const eff = this.mixer.effective().map((g) => g * this.mixer.master);
      samples = renderMix(run.recorders, eff);
      const preset = this.mixer.active();
      name = `${run.name}-${preset && preset !== 'all' ? preset : 'mix'}.wav`;
    } else {
      const i = Number(which);
      const frames = Math.max(...run.recorders.map((r) => r.end));
      samples = run.recorders[i].render(frames);
      name = `${run.name}-${this.names[i]}.wav`;
    }
    const a = document.createElement('a');
    a.href = URL.createObjectURL(wavBlob(samples, run.rate, CHANNELS));
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }
}

window.demixPage = new Page();
