// page_test.mjs - browser test of web/ (ctest label browser, run by
// run.sh): demixd on 127.0.0.1 with a free port, the CPU engine and
// tests/data/tiny.safetensors (or $DEMIX_TEST_MODEL); Debian's chromium headless through
// playwright-core. Steps, each waiting on conditions the page exposes in
// the DOM (never on sleeps):
//   1. the page loads with demixd's strict CSP, four mixer strips;
//   2. the demo song streams over ws://127.0.0.1:PORT/v1/stream (Opus both
//      ways where WebCodecs has it) and all four stems arrive
//      (data-frames-received grows on every strip);
//   3. faders: a stem's level after its fader is the fader gain times its
//      level before it (0.5, 0 by keyboard, 2); the master fader at 0
//      silences the output and back at 1 brings it back;
//   4. the karaoke preset silences the vocals only; screenshots at desktop
//      and phone width (artifacts);
//   5. keyboard shortcuts switch presets;
//   6. the song plays to its end: every stem has exactly the song's frames;
//   7. export: the mix and one stem download as WAV of the right length;
//   8. a local file (a WAV the test writes) is decoded and separated whole;
//      with Opus (WebCodecs, the default where the browser has it) and PCM
//      the stems line up to the frame (cross-correlation of one stem);
//   9. the microphone (Chromium's fake capture device) streams; Stop stops;
//  10. a stall (the page's test hook holds the player's feed for 1 s): the
//      jitter buffer grows by most of it, then drains back (crossfaded
//      skip, worklet.js) to its base target within a bounded time; after
//      Stop the page shows the server's session count going back to 0;
//  11. the server goes away mid-song: the page says so, reconnects to a new
//      demixd on the same port and goes on, the stems re-primed (the start
//      of the new session re-sends a tail before where they stopped, and
//      what every stem received is contiguous, no repeat: frames received
//      equal the position reached);
//  12. no page errors, no CSP violations.
// Exit 0 when every step passes, 1 on the first failure (the remaining
// steps are not run), 77 (skip) when the browser cannot start.
//
// Environment: DEMIXD_BIN, DEMIX_TEST_DATA, DEMIX_WEB_DIR,
// DEMIX_ARTIFACT_DIR, CHROMIUM.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WAIT_MS = 90_000; // one DOM condition; generous for a loaded CI box
const SONG_WAIT_MS = 240_000; // the 45 s song to its end
const SERVER_START_MS = 120_000;

const env = process.env;
const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '../..');
const demixdBin = env.DEMIXD_BIN || path.join(root, 'build/server/demixd');
const dataDir = env.DEMIX_TEST_DATA || path.join(root, 'tests/data');
const webDir = env.DEMIX_WEB_DIR || path.join(root, 'web');
const artifacts = env.DEMIX_ARTIFACT_DIR || path.join(os.tmpdir(), 'demixd-browser-artifacts');
const chromiumBin = env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(artifacts, { recursive: true });

let passed = 0;
let failed = 0;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok ${passed + failed} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed++;
    console.log(`not ok ${passed + failed} - ${name}: ${err && err.message ? err.message : err}`);
    throw err;
  }
}

// ---- demixd -----------------------------------------------------------------

let serverCount = 0;
const liveServers = new Set();
// A demixd must not outlive the test, however the test ends.
process.on('exit', () => {
  for (const s of liveServers) s.proc.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(1));

// DEMIX_TEST_MODEL runs the same steps on other weights (by hand: the
// shipped model, models/default.safetensors); CI uses the tiny test model.
const modelPath = process.env.DEMIX_TEST_MODEL || path.join(dataDir, 'tiny.safetensors');

class Server {
  constructor(port) {
    this.log = path.join(artifacts, `demixd-${++serverCount}.log`);
    const args = ['--model', modelPath, '--backend', 'cpu', '--threads', '1',
      '--host', '127.0.0.1', '--port', String(port), '--web', webDir, '--max-sessions', '8'];
    this.proc = spawn(demixdBin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    liveServers.add(this);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => {
      liveServers.delete(this);
      resolve({ code, sig });
    }));
    const out = fs.createWriteStream(this.log);
    let text = '';
    this.port = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demixd did not log 'listening on' within ${SERVER_START_MS / 1000} s; see ${this.log}`)), SERVER_START_MS);
      this.proc.stderr.on('data', (d) => {
        out.write(d);
        text += d.toString();
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      this.proc.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      this.exited.then(({ code, sig }) => {
        clearTimeout(timer);
        reject(new Error(`demixd exited (${code ?? sig}) before listening; see ${this.log}`));
      });
    });
    this.port.catch(() => {});
  }

  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    const killer = setTimeout(() => this.proc.kill('SIGKILL'), 30_000);
    const r = await this.exited;
    clearTimeout(killer);
    return r;
  }
}

// ---- page helpers -----------------------------------------------------------------

const dataset = (page) => page.evaluate(() => {
  const strips = {};
  for (const s of document.querySelectorAll('#strips .strip')) {
    strips[s.dataset.stem] = {
      frames: Number(s.dataset.framesReceived), level: Number(s.dataset.level),
      raw: Number(s.dataset.rawLevel), gain: Number(s.dataset.gain),
    };
  }
  return { ...document.getElementById('app').dataset, master: Number(document.getElementById('master').dataset.level), strips };
});

const waitState = (page, state, timeout = WAIT_MS) =>
  page.waitForFunction((s) => document.getElementById('app').dataset.state === s, state, { timeout, polling: 100 })
    .catch(async (e) => {
      const d = await dataset(page).catch(() => ({}));
      throw new Error(`state did not become '${state}' (it is '${d.state}'; message: ${await page.textContent('#message').catch(() => '?')}): ${e.message.split('\n')[0]}`);
    });

// every stem strip has received at least `frames` frames
const waitFrames = (page, frames, timeout = WAIT_MS) =>
  page.waitForFunction((n) => {
    const s = [...document.querySelectorAll('#strips .strip')];
    return s.length > 0 && s.every((e) => Number(e.dataset.framesReceived) >= n);
  }, frames, { timeout, polling: 100 });

// a stem's level after its fader is `gain` times its level before it
const waitLevelRatio = (page, stem, gain, timeout = WAIT_MS) =>
  page.waitForFunction(([name, g]) => {
    const s = document.querySelector(`#strips .strip[data-stem="${name}"]`);
    const raw = Number(s.dataset.rawLevel);
    const level = Number(s.dataset.level);
    if (!(raw > 1e-6)) return false;
    return g === 0 ? level === 0 : Math.abs(level / raw - g) < 0.01 * g;
  }, [stem, gain], { timeout, polling: 50 });

async function setFader(page, selector, value) {
  await page.$eval(selector, (el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

function checkWav(file, rate, frames) {
  const b = fs.readFileSync(file);
  check(b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WAVE', `${file}: not a RIFF WAVE file`);
  check(b.readUInt16LE(20) === 1 && b.readUInt16LE(22) === 2 && b.readUInt16LE(34) === 16, `${file}: not 16-bit stereo PCM`);
  check(b.readUInt32LE(24) === rate, `${file}: rate ${b.readUInt32LE(24)}, want ${rate}`);
  check(b.readUInt32LE(40) === frames * 4, `${file}: ${b.readUInt32LE(40) / 4} frames, want ${frames}`);
  check(b.length === 44 + frames * 4, `${file}: ${b.length} bytes`);
  let nonzero = 0;
  for (let i = 44; i < b.length; i += 2) if (b.readInt16LE(i) !== 0) nonzero++;
  return nonzero;
}

// A 16-bit stereo WAV: a 440 Hz tone left, 660 Hz right, at `rate`
// (the page's own rate, so decodeAudioData keeps the length exact).
function toneWav(rate, frames) {
  const b = Buffer.alloc(44 + frames * 4);
  b.write('RIFF', 0, 'latin1');
  b.writeUInt32LE(36 + frames * 4, 4);
  b.write('WAVEfmt ', 8, 'latin1');
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(2, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 4, 28);
  b.writeUInt16LE(4, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36, 'latin1');
  b.writeUInt32LE(frames * 4, 40);
  for (let i = 0; i < frames; i++) {
    b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + 4 * i);
    b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 660 * i) / rate)), 46 + 4 * i);
  }
  return b;
}

// Noise bursts of changing loudness (a fixed LCG): broadband, so a cross
// correlation has one clear peak.
function noiseWav(rate, frames) {
  const b = toneWav(rate, frames);
  let x = 12345;
  for (let i = 0; i < frames; i++) {
    const env = Math.floor(i / (rate / 8)) % 3 === 2 ? 0 : 0.2 + 0.2 * Math.floor(i / (rate / 4) % 4);
    for (let c = 0; c < 2; c++) {
      x = (1103515245 * x + 12345) >>> 0;
      b.writeInt16LE(Math.round(32767 * env * ((x / 2 ** 32) * 2 - 1)), 44 + 4 * i + 2 * c);
    }
  }
  return b;
}

// The left channel of a 16-bit stereo WAV (checkWav's format) as floats,
// low-passed by an 8-frame moving average (Opus keeps the waveform of the
// low band, not of the noisy top).
function left(b) {
  const n = (b.length - 44) / 4;
  const out = new Float64Array(n);
  let acc = 0;
  const x = (i) => (i >= 0 ? b.readInt16LE(44 + 4 * i) / 32768 : 0);
  for (let i = 0; i < n; i++) {
    acc += x(i) - x(i - 8);
    out[i] = acc / 8;
  }
  return out;
}

// The lag of b against a (|lag| <= maxLag) with the largest normalised
// cross-correlation, that correlation, and the largest one more than 16
// frames away from it (side).
function bestLag(a, b, maxLag) {
  let best = { lag: 0, corr: -Infinity };
  const all = [];
  const n = Math.min(a.length, b.length);
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    let ab = 0, aa = 0, bb = 0;
    for (let i = Math.max(0, -lag); i < Math.min(n, n - lag); i++) {
      const x = a[i];
      const y = b[i + lag];
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    const corr = aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
    all.push(corr);
    if (corr > best.corr) best = { lag, corr };
  }
  best.side = Math.max(...all.filter((_, k) => Math.abs(k - maxLag - best.lag) > 16));
  return best;
}

// ---- the test ------------------------------------------------------------------------

async function main() {
  check(fs.existsSync(demixdBin), `demixd not found at ${demixdBin} (build the demixd target)`);
  let server = null;
  let browser = null;
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'demixd-chromium-'));
  const consoleErrors = [];
  const pageErrors = [];
  const sockets = [];
  try {
    let port;
    await step('demixd starts on 127.0.0.1 with a free port', async () => {
      server = new Server(0);
      port = await server.port;
      check(port > 0, 'no port');
    });

    try {
      browser = await chromium.launchPersistentContext(userDir, {
        executablePath: chromiumBin,
        headless: true,
        viewport: { width: 1280, height: 900 },
        acceptDownloads: true,
        args: [
          '--no-sandbox', '--autoplay-policy=no-user-gesture-required',
          '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
          '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
          '--disable-component-update', '--disable-sync', '--disable-default-apps',
          '--disable-features=Translate,MediaRouter,OptimizationHints',
        ],
      });
    } catch (err) {
      console.log(`SKIP: chromium did not start: ${err.message.split('\n')[0]}`);
      process.exitCode = 77;
      return;
    }
    const page = browser.pages()[0] || (await browser.newPage());
    page.setDefaultTimeout(WAIT_MS);
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const starts = [];
    page.on('websocket', (ws) => {
      sockets.push(ws.url());
      ws.on('framesent', (f) => {
        if (typeof f.payload === 'string' && f.payload.includes('"start"')) starts.push(JSON.parse(f.payload));
      });
    });
    const origin = `http://127.0.0.1:${port}`;

    await step('the page loads under the strict CSP with four strips', async () => {
      const res = await page.goto(`${origin}/`);
      check(res.status() === 200, `GET / answered ${res.status()}`);
      const csp = res.headers()['content-security-policy'] || '';
      check(/script-src 'self'/.test(csp) && /style-src 'self'/.test(csp) && !/unsafe/.test(csp), `CSP is '${csp}'`);
      await page.waitForFunction(() => window.demixPage && document.querySelectorAll('#strips .strip').length === 4);
      const names = await page.$$eval('#strips .strip', (s) => s.map((e) => e.dataset.stem));
      check(names.join() === 'drums,bass,vocals,other', `strips ${names}`);
      check((await dataset(page)).state === 'idle', 'state is not idle');
      check(await page.isChecked('input[name=source][value=demo]'), 'the demo song is not the default source');
    });

    let rate;
    await step('the demo song streams and all four stems arrive', async () => {
      await page.click('#play');
      await waitState(page, 'streaming');
      rate = await page.evaluate(() => window.demixPage.ctx.sampleRate);
      check(sockets.includes(`ws://127.0.0.1:${port}/v1/stream`), `WebSocket URL ${sockets}`);
      const opusOk = await page.isEnabled('#codec option[value=opus]');
      const want = opusOk ? 'opus' : 'pcm_f32';
      check(starts.length === 1 && starts[0].input.codec === want && starts[0].output.codec === want,
        `start ${JSON.stringify(starts)}; want ${want} both ways`);
      console.log(`# codec ${want}${opusOk ? '' : ` (${await page.textContent('#codec-note')})`}`);
      await waitFrames(page, 2 * rate);
      const before = Math.min(...Object.values((await dataset(page)).strips).map((s) => s.frames));
      await waitFrames(page, before + rate / 2); // and keeps arriving
      await page.waitForFunction(() => Number(document.getElementById('app').dataset.playedFrames) > 0);
      await page.waitForFunction(() => Number(document.getElementById('master').dataset.level) > 0);
      const d = await dataset(page);
      console.log(`# rate ${rate} Hz, frames ${JSON.stringify(Object.fromEntries(Object.entries(d.strips).map(([k, v]) => [k, v.frames])))}, played ${d.playedFrames}, measured latency ${d.latencyMs} ms`);
    });

    await step('stem levels follow the faders; the master fader follows too', async () => {
      await setFader(page, '#gain-2', 0.5); // vocals
      await waitLevelRatio(page, 'vocals', 0.5);
      await page.focus('#gain-0'); // drums, by keyboard
      await page.keyboard.press('Home');
      check((await page.inputValue('#gain-0')) === '0', 'Home did not move the drums fader to 0');
      await waitLevelRatio(page, 'drums', 0);
      await page.keyboard.press('End');
      await waitLevelRatio(page, 'drums', 2);
      await setFader(page, '#gain-0', 1);
      await setFader(page, '#gain-2', 1);
      await waitLevelRatio(page, 'drums', 1);
      await waitLevelRatio(page, 'vocals', 1);
      await page.focus('#master-gain');
      await page.keyboard.press('Home');
      await page.waitForFunction(() => document.getElementById('master').dataset.level === '0.000'
        || Number(document.getElementById('master').dataset.level) === 0);
      await setFader(page, '#master-gain', 1);
      await page.waitForFunction(() => Number(document.getElementById('master').dataset.level) > 0);
    });

    await step('karaoke silences the vocals and nothing else; screenshots', async () => {
      await page.click('#presets button[data-preset=karaoke]');
      check((await page.getAttribute('#presets button[data-preset=karaoke]', 'aria-pressed')) === 'true', 'karaoke not pressed');
      check((await page.getAttribute('#strips .strip[data-stem=vocals] .mute', 'aria-pressed')) === 'true', 'vocals not muted');
      await waitLevelRatio(page, 'vocals', 0);
      for (const stem of ['drums', 'bass', 'other']) await waitLevelRatio(page, stem, 1);
      await page.waitForFunction(() => Number(document.getElementById('master').dataset.level) > 0);
      await page.screenshot({ path: path.join(artifacts, 'page-karaoke-desktop.png'), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForFunction(() => document.documentElement.scrollWidth <= 390); // nothing wider than a phone
      await page.screenshot({ path: path.join(artifacts, 'page-karaoke-phone.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 900 });
      console.log(`# screenshots in ${artifacts}`);
    });

    await step('keyboard shortcuts switch presets and mutes', async () => {
      await page.focus('#play'); // a button: shortcuts work from there
      await page.keyboard.press('a');
      await page.waitForFunction(() => document.querySelector('#presets [data-preset=acappella]').getAttribute('aria-pressed') === 'true');
      await waitLevelRatio(page, 'drums', 0);
      await waitLevelRatio(page, 'vocals', 1);
      await page.keyboard.press('n');
      await waitLevelRatio(page, 'vocals', 1);
      await waitLevelRatio(page, 'drums', 1);
      await page.keyboard.press('2'); // mute bass
      check((await page.getAttribute('#strips .strip[data-stem=bass] .mute', 'aria-pressed')) === 'true', 'key 2 did not mute bass');
      await page.keyboard.press('2');
      await page.keyboard.press('k');
      await waitLevelRatio(page, 'vocals', 0);
    });

    let total;
    await step('the song plays to its end; every stem has all its frames', async () => {
      await waitState(page, 'finished', SONG_WAIT_MS);
      total = await page.evaluate(() => window.demixPage.lastRun.total);
      const d = await dataset(page);
      for (const [stem, s] of Object.entries(d.strips)) check(s.frames === total, `${stem}: ${s.frames} frames of ${total}`);
      check(Number(d.playedFrames) >= total, `played ${d.playedFrames} of ${total}`);
      check(/Finished/.test(await page.textContent('#message')), 'no finished message');
      console.log(`# ${total} frames per stem, underruns ${d.underruns}, reconnects ${d.reconnects}`);
    });

    await step('export: the karaoke mix and the vocals stem as WAV', async () => {
      check(await page.isEnabled('#export-mix'), 'export not enabled');
      for (const [sel, name, wantSound] of [['#export-mix', 'karaoke', true], ['#export-buttons [data-export="2"]', 'vocals', true]]) {
        const [dl] = await Promise.all([page.waitForEvent('download'), page.click(sel)]);
        const file = path.join(artifacts, dl.suggestedFilename());
        await dl.saveAs(file);
        check(dl.suggestedFilename() === `potassium-${name}.wav`, `file name ${dl.suggestedFilename()}`);
        const nonzero = checkWav(file, rate, total);
        check(!wantSound || nonzero > 0, `${file} is silent`);
        fs.rmSync(file);
      }
    });

    await step('a local file (a 3 s WAV the test writes) is decoded and separated', async () => {
      const file = path.join(artifacts, 'tone.wav');
      fs.writeFileSync(file, toneWav(rate, 3 * rate));
      await page.setInputFiles('#file', file);
      check(await page.isChecked('input[name=source][value=file]'), 'choosing a file did not select the file source');
      await page.click('#play');
      await waitState(page, 'finished');
      const n = await page.evaluate(() => window.demixPage.lastRun.total);
      check(n === 3 * rate, `decoded ${n} frames, want ${3 * rate}`);
      const d = await dataset(page);
      for (const [stem, s] of Object.entries(d.strips)) check(s.frames === n, `${stem}: ${s.frames} frames of ${n}`);
      fs.rmSync(file);
    });

    await step('Opus and PCM give the same stems at the same positions', async () => {
      if (!(await page.isEnabled('#codec option[value=opus]'))) {
        console.log(`# skipped: ${await page.textContent('#codec-note')}`);
        return;
      }
      const file = path.join(artifacts, 'noise.wav');
      fs.writeFileSync(file, noiseWav(rate, 2 * rate));
      const stems = {};
      for (const codec of ['pcm', 'opus']) {
        await page.selectOption('#codec', codec);
        await page.setInputFiles('#file', file);
        await page.click('#play');
        await waitState(page, 'finished');
        const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-buttons [data-export="2"]')]);
        const out = path.join(artifacts, `noise-vocals-${codec}.wav`);
        await dl.saveAs(out);
        checkWav(out, rate, 2 * rate);
        stems[codec] = left(fs.readFileSync(out));
        fs.rmSync(out);
      }
      fs.rmSync(file);
      const { lag, corr, side } = bestLag(stems.pcm, stems.opus, 2000);
      console.log(`# vocals, Opus against PCM: best lag ${lag} frames, correlation ${corr.toFixed(3)}, elsewhere at most ${side.toFixed(3)}`);
      check(Math.abs(lag) <= 1, `Opus stems are ${lag} frames off the PCM ones`);
      check(corr > 0.5 && corr > 2 * side, `no clear correlation peak: ${corr.toFixed(3)} against ${side.toFixed(3)}`);
      await page.selectOption('#codec', 'opus');
    });

    await step('the microphone streams through the fake capture device', async () => {
      await page.check('input[name=source][value=mic]');
      await page.click('#play');
      await waitState(page, 'streaming');
      await waitFrames(page, rate);
      const input = Number((await dataset(page)).inputFrames);
      check(input > 0, 'no microphone input was sent');
      await page.click('#stop');
      await waitState(page, 'stopped');
    });

    await step('after a stall the jitter buffer drains back to its target; the session count after stop', async () => {
      await page.check('input[name=source][value=demo]');
      await page.click('#play');
      await waitState(page, 'streaming');
      await waitFrames(page, rate);
      // steady: the buffer near its target
      await page.waitForFunction(() => {
        const d = document.getElementById('app').dataset;
        return Number(d.bufferedMs) > 0 && Number(d.bufferedMs) <= Number(d.targetMs) + 60;
      }, null, { polling: 50 });
      const before = await dataset(page);
      await page.evaluate(() => window.demixPage.testStall(1000));
      // the stall shows: the buffer holds most of it on top of the target
      await page.waitForFunction(() => {
        const d = document.getElementById('app').dataset;
        return Number(d.bufferedMs) >= Number(d.targetMs) + 500;
      }, null, { timeout: 10_000, polling: 20 });
      const grown = await dataset(page);
      const t0 = Date.now();
      // and drains back: the target at its base (the underrun raised it),
      // the buffer within the slack of it (worklet.js: max(40 ms, target /
      // 4)), by skips
      await page.waitForFunction(() => {
        const d = document.getElementById('app').dataset;
        const base = Number(d.baseTargetMs);
        return Number(d.targetMs) === base && Number(d.skips) >= 1 &&
          Number(d.bufferedMs) <= base + Math.max(40, base / 4);
      }, null, { timeout: 15_000, polling: 50 });
      const after = await dataset(page);
      console.log(`# stall of 1 s: buffer ${before.bufferedMs} ms (target ${before.targetMs}) -> ${grown.bufferedMs} ms (target ${grown.targetMs}) -> ${after.bufferedMs} ms (target ${after.targetMs}) in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${after.skips} skips, ${after.underruns} underruns`);
      check(Number(after.sessions) >= 1, `sessions shown while streaming: ${after.sessions}`);
      await page.click('#stop');
      await waitState(page, 'stopped');
      await page.waitForFunction(() => document.getElementById('app').dataset.sessions === '0'
        && /^0 of \d+$/.test(document.getElementById('st-sessions').textContent));
    });

    await step('the server goes away: the page says so, reconnects and goes on', async () => {
      await page.check('input[name=source][value=demo]');
      await page.click('#play');
      await waitState(page, 'streaming');
      await waitFrames(page, rate);
      await server.stop('SIGTERM');
      await waitState(page, 'reconnecting');
      const msg = await page.textContent('#message');
      check(/server went away/.test(msg) && /Reconnecting/.test(msg), `message '${msg}'`);
      check(/Connection lost/.test(await page.textContent('#conn')), 'the connection pill does not say so');
      const frames = Math.min(...Object.values((await dataset(page)).strips).map((s) => s.frames));
      server = new Server(port);
      check((await server.port) === port, 'the new demixd has another port');
      await waitState(page, 'streaming');
      await page.waitForFunction(() => document.getElementById('app').dataset.reconnects === '1');
      await waitFrames(page, frames + rate);
      check(/Reconnected/.test(await page.textContent('#message')), 'no reconnected message');
      // re-primed: the new session began a tail (1 s, on the hop grid)
      // before where the stems stopped; what each stem kept is contiguous
      // from 0, with nothing twice (received = the end reached)
      const r = await page.evaluate(() => {
        const run = window.demixPage.run;
        return { base: run.base, at: run.resumeAt, rate: run.rate, received: run.received, ends: run.ends };
      });
      check(r.at > 0 && r.base < r.at && (r.at - r.base >= r.rate || r.base === 0),
        `resumed at ${r.at} from ${r.base}: no tail re-sent`);
      r.received.forEach((n, i) => check(n === r.ends[i], `stem ${i}: ${n} frames kept, end ${r.ends[i]}`));
      console.log(`# resumed at ${r.at} frames, re-sent from ${r.base}`);
      await page.click('#stop');
      await waitState(page, 'stopped');
    });

    await step('no page errors and no CSP violations', async () => {
      // Chromium logs a failed WebSocket handshake (the server was away).
      const errors = consoleErrors.filter((t) => !/WebSocket connection to .* failed/.test(t));
      check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
      check(errors.length === 0, `console errors: ${errors.join(' | ')}`);
    });
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (server) await server.stop().catch(() => {});
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  if (!failed) {
    failed++;
    console.log(`not ok - ${err && err.message ? err.message : err}`);
  }
}
if (process.exitCode !== 77) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}
