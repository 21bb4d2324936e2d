// protocol.js - the client side of docs/protocol.md (version 1) for the
// page: the WebSocket URL, control messages, and the binary audio headers.
//
// Design: pure functions, no state, no DOM. Audio travels as pcm_f32 (the
// header keeps a float payload 4-byte aligned, so the payload is read in
// place as a Float32Array view) or as Opus packets (opus.js) both ways.

export const SUBPROTOCOL = 'demix.v1';
export const MAGIC = 0xd1;
export const KIND_AUDIO_IN = 0x01;
export const KIND_AUDIO_OUT = 0x02;
export const CODEC_PCM_S16 = 0;
export const CODEC_PCM_F32 = 1;
export const CODEC_OPUS = 2;
export const FLAG_LAST = 0x01;
export const STEM_MIX = 0xff;
export const AUDIO_IN_HEADER_BYTES = 8;
export const AUDIO_OUT_HEADER_BYTES = 24;
export const MAX_BINARY_BYTES = 65536;

// Error codes after which trying again cannot help (section 7): the page
// sent something wrong or is not allowed in. The others (shutting_down,
// at_capacity, timeout, internal, and a connection that just drops) are
// answered by reconnecting.
export const FATAL_CODES = new Set([
  'bad_json', 'unknown_type', 'bad_field', 'unknown_stem', 'bad_order',
  'audio_before_start', 'bad_audio', 'too_large', 'unauthorized',
]);

// ws: or wss: after the page's own protocol, same host and port.
export function streamUrl(loc) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/v1/stream`;
}

// The access token from the page's fragment (`#token=...`, percent-
// encoded; other `&`-separated items ignored), or '' when there is none.
// The fragment never travels to the server in a request or a Referer.
export function tokenFromHash(hash) {
  for (const item of hash.replace(/^#/, '').split('&')) {
    if (!item.startsWith('token=')) continue;
    try {
      return decodeURIComponent(item.slice(6));
    } catch {
      return '';
    }
  }
  return '';
}

// opus: null for PCM float32 both ways, else { preSkip, bitrate } for
// Opus both ways (20 ms output packets). token: sent when not empty.
export function startMessage(sampleRate, channels, stems, opus = null, token = '') {
  return JSON.stringify({
    type: 'start',
    sample_rate: sampleRate,
    channels,
    input: opus ? { codec: 'opus', pre_skip: opus.preSkip } : { codec: 'pcm_f32' },
    output: opus ? { codec: 'opus', bitrate: opus.bitrate, frame_ms: 20 } : { codec: 'pcm_f32' },
    stems,
    ...(token ? { token } : {}),
  });
}

export const END_MESSAGE = '{"type":"end"}';
export const STATS_MESSAGE = '{"type":"stats"}';

// One audio_in message: 8-byte header and interleaved f32 frames.
export function audioIn(seq, interleaved) {
  const buf = new ArrayBuffer(AUDIO_IN_HEADER_BYTES + interleaved.byteLength);
  const v = new DataView(buf);
  v.setUint8(0, MAGIC);
  v.setUint8(1, KIND_AUDIO_IN);
  v.setUint8(2, CODEC_PCM_F32);
  v.setUint8(3, 0);
  v.setUint32(4, seq >>> 0, true);
  new Float32Array(buf, AUDIO_IN_HEADER_BYTES).set(interleaved);
  return buf;
}

// One audio_in message carrying one Opus packet.
export function audioInOpus(seq, packet) {
  const buf = new ArrayBuffer(AUDIO_IN_HEADER_BYTES + packet.byteLength);
  const v = new DataView(buf);
  v.setUint8(0, MAGIC);
  v.setUint8(1, KIND_AUDIO_IN);
  v.setUint8(2, CODEC_OPUS);
  v.setUint8(3, 0);
  v.setUint32(4, seq >>> 0, true);
  new Uint8Array(buf, AUDIO_IN_HEADER_BYTES).set(packet);
  return buf;
}

// Frames per audio_in message so that it stays under the size limit.
export function maxInFrames(channels) {
  return Math.floor((MAX_BINARY_BYTES - AUDIO_IN_HEADER_BYTES) / (4 * channels));
}

// An audio_out message, or an Error saying what is wrong with it.
// samples: interleaved float32 (converted from s16 when the codec is s16);
// packet: the Opus packet (a view) when the codec is opus.
export function parseAudioOut(buf, channels) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength <= AUDIO_OUT_HEADER_BYTES)
    return new Error('audio message shorter than its header');
  const v = new DataView(buf);
  if (v.getUint8(0) !== MAGIC || v.getUint8(1) !== KIND_AUDIO_OUT)
    return new Error('not a version 1 audio_out message');
  const codec = v.getUint8(2);
  const flags = v.getUint8(3);
  const seq = v.getUint32(4, true);
  const stem = v.getUint8(8);
  const frames = v.getUint32(12, true);
  const position = Number(v.getBigUint64(16, true));
  const payloadBytes = buf.byteLength - AUDIO_OUT_HEADER_BYTES;
  let samples = null;
  let packet = null;
  if (codec === CODEC_OPUS) {
    packet = new Uint8Array(buf, AUDIO_OUT_HEADER_BYTES);
  } else if (codec === CODEC_PCM_F32) {
    if (payloadBytes !== frames * channels * 4)
      return new Error(`f32 payload of ${payloadBytes} bytes for ${frames} frames`);
    samples = new Float32Array(buf, AUDIO_OUT_HEADER_BYTES, frames * channels);
  } else if (codec === CODEC_PCM_S16) {
    if (payloadBytes !== frames * channels * 2)
      return new Error(`s16 payload of ${payloadBytes} bytes for ${frames} frames`);
    const s16 = new Int16Array(buf.slice(AUDIO_OUT_HEADER_BYTES));
    samples = new Float32Array(s16.length);
    for (let i = 0; i < s16.length; i++) samples[i] = s16[i] / 32768;
  } else {
    return new Error(`codec ${codec} is not handled by this page`);
  }
  return { codec, last: (flags & FLAG_LAST) !== 0, seq, stem, frames, position, samples, packet };
}

// Reconnecting and resuming (docs/protocol.md section 7.1): the policy and
// arithmetic of the command line's client core (tools/client/
// client_resume.h), for the page. A reconnect waits a backoff with
// "equal jitter" (uniform in [d/2, d], d doubling from 0.25 s up to 8 s),
// at most `attempts` times and `waitS` seconds per outage; the new session
// re-sends `tailMs` of input before the first position the page lacks,
// snapped onto the model's hop grid, and its output before that position
// is discarded.
export const RESUME = { attempts: 8, waitS: 60, tailMs: 1000, delayMinS: 0.25, delayMaxS: 8, maxGridS: 2 };

// The delay before attempt n (1, 2, ...) of an outage, in seconds.
export function backoffDelay(n, random = Math.random) {
  const d = Math.min(RESUME.delayMinS * 2 ** (n - 1), RESUME.delayMaxS);
  return d / 2 + (random() * d) / 2;
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

// Client frames that are a whole number of model hops at the model rate
// (so a session started at a multiple cuts the same frames as one started
// at 0); 1 when that is over maxGridS or an argument is not positive.
export function resumeGrid(clientRate, modelRate, hop) {
  if (!(clientRate > 0 && modelRate > 0 && hop > 0)) return 1;
  const hc = hop * clientRate;
  const g = hc / gcd(modelRate, hc);
  return g > RESUME.maxGridS * clientRate ? 1 : g;
}

// Where the new session starts: resumeAt - tail, down onto the grid, >= 0.
export function resumeBase(resumeAt, tailMs, rate, grid) {
  const b = resumeAt - Math.round((tailMs * rate) / 1000);
  if (b <= 0) return 0;
  return grid > 1 ? b - (b % grid) : b;
}

// Close codes of section 7 in words, for the status line.
export function closeText(code, reason) {
  const names = {
    1000: 'normal close', 1001: 'server going away', 1003: 'bad audio',
    1006: 'connection lost', 1008: 'policy violation', 1009: 'message too large',
    1011: 'server error', 1012: 'server restarting', 1013: 'server at capacity',
  };
  const name = names[code] || 'closed';
  return `${name} (${code}${reason ? ' ' + reason : ''})`;
}
