// deploy/ci/proxy_test.mjs TLS_PORT BACKEND0 BACKEND1 HTTP_PORT - the live
// part of deploy/check.sh's `proxy` step: nginx (deploy/nginx/demixd.conf
// and the least_conn upstream of deploy/multi-gpu.sh) in front of two
// demixd processes on BACKEND0 and BACKEND1.
//
//   - GET /v1/health/live and /v1/health/ready through TLS: 200;
//   - plain HTTP redirects to HTTPS (301);
//   - two WebSocket sessions (wss://, subprotocol demix.v1) both get
//     `ready`, and while both are open each backend counts one session
//     (its own /v1/health/ready): least_conn put them on different
//     processes; then each streams 8 hops of PCM, ends, gets its summary
//     and close 1000 through the proxy.
//
// Runs under node --experimental-websocket (Node 20) with
// NODE_TLS_REJECT_UNAUTHORIZED=0 (the test's certificate is self-signed).
const [tls, b0, b1, http] = process.argv.slice(2).map(Number);
const base = `https://127.0.0.1:${tls}`;
const RATE = 44100;
const HOP = 512;
let failed = 0;

function check(cond, msg) {
  console.log(`proxy_test: ${cond ? "ok" : "FAIL"}: ${msg}`);
  if (!cond) failed++;
}

async function get(url, opts = {}) {
  const r = await fetch(url, { redirect: "manual", ...opts });
  return { status: r.status, body: await r.text(), location: r.headers.get("location") };
}

function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms))]);
}

class Session {
  constructor(name) {
    this.name = name;
    this.texts = [];
    this.frames = 0;
    this.waiters = [];
    this.ws = new WebSocket(`wss://127.0.0.1:${tls}/v1/stream`, "demix.v1");
    this.ws.binaryType = "arraybuffer";
    this.closed = new Promise((res) => this.ws.addEventListener("close", (e) => res(e.code)));
    this.ws.addEventListener("message", (e) => {
      if (typeof e.data === "string") this.texts.push(JSON.parse(e.data));
      else this.frames++;
      this.waiters = this.waiters.filter((w) => !w());
    });
  }
  opened() {
    return new Promise((res, rej) => {
      this.ws.addEventListener("open", res);
      this.ws.addEventListener("error", () => rej(new Error(`${this.name}: WebSocket error`)));
    });
  }
  waitType(type) {
    return new Promise((res) => {
      const f = () => {
        const m = this.texts.find((t) => t.type === type || t.type === "error");
        if (m) res(m);
        return !!m;
      };
      if (!f()) this.waiters.push(f);
    });
  }
  start() {
    this.ws.send(JSON.stringify({
      type: "start", sample_rate: RATE, channels: 2,
      input: { codec: "pcm_f32" }, output: { codec: "pcm_f32" }, stems: ["vocals"],
    }));
  }
  sendAudio(hops) {
    for (let seq = 0; seq < hops; seq++) {
      const buf = new ArrayBuffer(8 + HOP * 2 * 4);
      const h = new DataView(buf);
      h.setUint8(0, 0xd1); h.setUint8(1, 1); h.setUint8(2, 1); h.setUint8(3, 0);
      h.setUint32(4, seq, true);
      const x = new Float32Array(buf, 8);
      for (let i = 0; i < x.length; i++) x[i] = 0.1 * Math.sin((seq * HOP + i) * 0.01);
      this.ws.send(buf);
    }
    this.ws.send(JSON.stringify({ type: "end" }));
  }
}

async function backendSessions(port) {
  const r = await get(`http://127.0.0.1:${port}/v1/health/ready`);
  return JSON.parse(r.body).sessions;
}

try {
  for (const p of ["/v1/health/live", "/v1/health/ready"]) {
    const r = await get(base + p);
    check(r.status === 200, `GET ${p} through TLS: ${r.status} ${r.body.trim()}`);
  }
  const redir = await get(`http://127.0.0.1:${http}/v1/health/ready`);
  check(redir.status === 301 && /^https:/.test(redir.location ?? ""), `plain HTTP: ${redir.status} to ${redir.location}`);

  const a = new Session("a");
  await withTimeout(a.opened(), 10000, "session a open");
  a.start();
  const ra = await withTimeout(a.waitType("ready"), 20000, "session a ready");
  check(ra.type === "ready", `session a: ${ra.type}`);
  const s = new Session("b");
  await withTimeout(s.opened(), 10000, "session b open");
  s.start();
  const rb = await withTimeout(s.waitType("ready"), 20000, "session b ready");
  check(rb.type === "ready", `session b: ${rb.type}`);
  const n0 = await backendSessions(b0), n1 = await backendSessions(b1);
  check(n0 === 1 && n1 === 1, `least_conn: one session on each process (${n0} and ${n1})`);

  for (const x of [a, s]) x.sendAudio(8);
  for (const x of [a, s]) {
    const sum = await withTimeout(x.waitType("summary"), 30000, `session ${x.name} summary`);
    check(sum.type === "summary" && sum.input_frames === 8 * HOP,
      `session ${x.name}: summary, ${sum.input_frames} frames in, ${x.frames} audio messages back`);
    const code = await withTimeout(x.closed, 10000, `session ${x.name} close`);
    check(code === 1000, `session ${x.name}: close ${code}`);
  }
} catch (e) {
  check(false, e.message);
}
console.log(`proxy_test: ${failed ? "failed" : "passed"}`);
process.exit(failed ? 1 : 0);
