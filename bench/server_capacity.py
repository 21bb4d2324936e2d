#!/usr/bin/env python3
"""bench/server_capacity.py - how many live sessions one demixd holds.

Starts demixd (pinned to --server-cpus), then for each session count N runs
`demix loadgen` (pinned to --client-cpus) for --seconds of audio per
session, and records per round: whether it held (no refusal, no failed
session, every session kept up, 0 lost hops, p99 added latency within
--max-p99-ms), the latency figures, the server's mean batch per step, and
the server's CPU per thread (from /proc/PID/task/*/stat, by thread name:
demixd-svcK, demixd-sched, the rest), so that the CPU microseconds per
session-hop and the busiest thread name the bottleneck; within the service
threads, /metrics' phase counters split each session-hop's time into
receive, writeable and wake-up callbacks and the rest ("loop": lws's event
loop and the kernel's socket calls). Rounds go up the
list and stop after the first that does not hold (--keep-going: run all).

One JSON object per round goes to OUT/rounds.jsonl, a table to stdout and
OUT/table.txt.

Usage (from the repository root, after a build):
  bench/server_capacity.py --build build --model models/default.safetensors \
      --backend cuda --codec pcm16 --sessions 1000,2000,4000 --seconds 60 \
      --server-cpus 0-9 --client-cpus 10-15 --out /tmp/cap
Extra demixd options after --demixd-args "...", extra loadgen options
after --loadgen-args "...".
"""
import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{thread name: cpu seconds} summed over threads of that name."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            stat = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        sec = (int(fields[11]) + int(fields[12])) / CLK_TCK
        key = name if name.startswith("demixd-") else "other"
        out[key] = out.get(key, 0.0) + sec
        # the kernel's share (stime) apart: sockets on loopback also
        # charge the peer's TCP receive work to the sending thread
        out[" sys"] = out.get(" sys", 0.0) + int(fields[12]) / CLK_TCK
    return out


def rss_bytes(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssPeak:
    """The largest resident size of a process while the round runs, and a
    sample every RSS_SERIES_S seconds (a soak's memory is flat when the
    series stops growing after its warm-up)."""

    RSS_SERIES_S = 10

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, rss_bytes(pid), False
        self.base = self.peak
        self.series = [self.peak]
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        next_sample = time.time() + self.RSS_SERIES_S
        while not self.stop:
            rss = rss_bytes(self.pid)
            self.peak = max(self.peak, rss)
            if time.time() >= next_sample:
                self.series.append(rss)
                next_sample += self.RSS_SERIES_S
            time.sleep(0.5)

    def done(self):
        self.stop = True
        self.t.join()
        return self.base, self.peak


def metric(port, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def service_phases(port):
    """{(kind, phase): value} of demixd_service_phase_{seconds,calls}_total
    (demixd's service threads: time in and calls of each kind of work)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=10).read().decode()
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in re.finditer(
        r'demixd_service_phase_(seconds|calls)_total\{phase="([a-z]+)"\} (\S+)',
        body)}


def phase_split(p0, p1, svc_cpu_s, hops):
    """Microseconds and calls per session-hop of each service-thread phase,
    and "loop": the service threads' CPU outside them (lws, the kernel)."""
    if not hops or not p1:
        return None
    us = {ph: (p1[(k, ph)] - p0.get((k, ph), 0)) / hops * 1e6
          for k, ph in p1 if k == "seconds"}
    calls = {ph: (p1[(k, ph)] - p0.get((k, ph), 0)) / hops
             for k, ph in p1 if k == "calls"}
    out = {"us": {k: round(v, 2) for k, v in us.items()},
           "calls": {k: round(v, 3) for k, v in calls.items()}}
    out["us"]["loop"] = round(svc_cpu_s / hops * 1e6 - sum(us.values()), 2)
    return out


def hop_wait_hist(port):
    """{upper bound seconds: cumulative count} of demixd_hop_wait_seconds."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=10).read().decode()
    out = {}
    for m in re.finditer(r'demixd_hop_wait_seconds_bucket\{le="([^"]+)"\} (\d+)',
                         body):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        out[le] = int(m.group(2))
    return out


def hist_quantiles(h0, h1, qs=(0.5, 0.9, 0.99, 0.999)):
    """Upper bucket bounds (ms) of the quantiles of the counts added
    between two cumulative histograms."""
    bounds = sorted(h1)
    cum = [h1[b] - h0.get(b, 0) for b in bounds]
    total = cum[-1] if cum else 0
    out = {}
    for q in qs:
        if not total:
            out[str(q)] = None
            continue
        k = next(i for i, c in enumerate(cum) if c >= q * total)
        out[str(q)] = bounds[k] * 1e3
    return out


def taskset(cpus):
    return ["taskset", "-c", cpus] if cpus else []


def start_server(a, port):
    cmd = taskset(a.server_cpus) + [
        a.demixd or os.path.join(a.build, "server/demixd"), "--model", a.model,
        "--backend", a.backend, "--port", str(port),
        "--max-sessions", str(a.max_sessions)] + shlex.split(a.demixd_args)
    log = open(os.path.join(a.out, f"demixd-{a.codec}-{port}.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        time.sleep(0.2)
        if p.poll() is not None:
            sys.exit(f"demixd exited early: see {log.name}")
        if "event=listening" in open(log.name).read():
            return p, log.name
    sys.exit("demixd did not start listening in 120 s")


def merge_reports(reps):
    if len(reps) == 1:
        return reps[0]
    out = dict(reps[0])
    for k in ("ok", "refused", "failed", "kept_up", "lost_hops", "late_hops",
              "started", "ready"):
        out[k] = sum(r.get(k, 0) or 0 for r in reps)
    for k in ("latency_ms", "added_latency_ms"):
        merged = {}
        for r in reps:
            for q, v in (r.get(k) or {}).items():
                if isinstance(v, (int, float)) and q != "count":
                    merged[q] = max(merged.get(q, v), v)
        out[k] = merged
    out["client_cpu_fraction"] = sum(r.get("client_cpu_fraction") or 0
                                     for r in reps)
    return out


def run_round(a, port, pid, n):
    cpu0 = thread_cpu(pid)
    rss = RssPeak(pid)
    hops0 = metric(port, "demixd_hops_total") or 0.0
    wait0 = hop_wait_hist(port)
    steps0 = metric(port, "demixd_step_seconds_count") or 0.0
    phases0 = service_phases(port)
    t0 = time.time()
    # --clients P: P loadgen processes with N/P sessions each (for a
    # single-threaded loadgen); their reports are merged conservatively
    # (counts summed, latency percentiles the worst of the processes)
    shares = [n // a.clients + (1 if k < n % a.clients else 0)
              for k in range(a.clients)]
    procs = []
    for share in shares:
        if share == 0:
            continue
        cmd = taskset(a.client_cpus) + [
            a.loadgen or os.path.join(a.build, "tools/demix"), "loadgen",
            "--url", f"ws://127.0.0.1:{port}/v1/stream", "--sessions",
            str(share), "--seconds", str(a.seconds), "--codec", a.codec,
            "--json", "-q", "--timeout", "60"] + shlex.split(a.loadgen_args)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    reps = []
    for pr in procs:
        out, err = pr.communicate()
        try:
            reps.append(json.loads(out)["rounds"][0])
        except (ValueError, KeyError, IndexError):
            return {"sessions": n, "error": (err or out)[-2000:]}
    wall = time.time() - t0
    rss_base, rss_peak = rss.done()
    cpu1 = thread_cpu(pid)
    hops = (metric(port, "demixd_hops_total") or 0.0) - hops0
    server_wait = hist_quantiles(wait0, hop_wait_hist(port))
    steps = (metric(port, "demixd_step_seconds_count") or 0.0) - steps0
    phases1 = service_phases(port)
    rep = merge_reports(reps)
    cpu = {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 3) for k in cpu1}
    sys_s = cpu.pop(" sys", 0.0)
    total = sum(cpu.values())
    svc = {k: v for k, v in cpu.items() if k.startswith("demixd-svc")}
    added = rep.get("added_latency_ms") or {}
    lat = rep.get("latency_ms") or {}
    p99_added = added.get("p99")
    if p99_added is None and lat:
        p99_added = lat.get("p99", 0) - rep.get("latency_announced_ms", 0)
    lost = rep.get("lost_hops", 0)
    # with --chaos, the misbehaving clients are not among the sessions
    # that must keep up; an episode not answered as documented fails
    chaos = [r["chaos"] for r in reps if r.get("chaos")]
    verify = [r["verify"] for r in reps if r.get("verify")]
    good = n - sum(c.get("clients", 0) for c in chaos)
    held = (rep.get("refused", 1) == 0 and rep.get("failed", 1) == 0 and
            rep.get("kept_up", 0) == good and lost == 0 and
            all(c.get("unanswered", 0) == 0 for c in chaos) and
            all(v.get("mismatched", 0) == 0 for v in verify) and
            p99_added is not None and p99_added <= a.max_p99_ms)
    return {
        "sessions": n, "codec": a.codec, "held": held,
        "ok": rep.get("ok"), "refused": rep.get("refused"),
        "failed": rep.get("failed"), "kept_up": rep.get("kept_up"),
        "lost_hops": lost, "late_hops_server": rep.get("late_hops"),
        "latency_ms": lat, "added_latency_ms": added,
        "p99_added_ms": p99_added,
        "announced_ms": rep.get("latency_announced_ms"),
        "hops": hops, "steps": steps,
        "server_hop_wait_ms_le": server_wait,
        "batch_mean": hops / steps if steps else None,
        "server_cpu_s": cpu, "server_cpu_total_s": round(total, 3),
        "server_cpu_kernel_s": round(sys_s, 3),
        "cpu_us_per_session_hop": total / hops * 1e6 if hops else None,
        # where the service threads' time goes, per session-hop
        "service_phases_per_session_hop": phase_split(
            phases0, phases1, sum(svc.values()), hops),
        "busiest_service_thread_cores":
            max(svc.values()) / wall if svc else None,
        "scheduler_cores": cpu.get("demixd-sched", 0) / wall,
        "client_cpu_fraction": rep.get("client_cpu_fraction"),
        "client_threads": rep.get("threads"),
        "server_rss_base_mb": round(rss_base / 2**20, 1),
        "server_rss_peak_mb": round(rss_peak / 2**20, 1),
        "server_rss_per_session_kb":
            round((rss_peak - rss_base) / n / 1024, 1) if n else None,
        "server_rss_series_mb": [round(b / 2**20, 1) for b in rss.series],
        "chaos": chaos or None,
        "verify": verify or None,
        "wall_s": round(wall, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default="models/default.safetensors")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--codec", default="pcm16")
    ap.add_argument("--sessions", default="100,200,400")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-p99-ms", type=float, default=10)
    ap.add_argument("--max-sessions", type=int, default=0,
                    help="demixd --max-sessions (default: largest N + 64)")
    ap.add_argument("--server-cpus", default="")
    ap.add_argument("--client-cpus", default="")
    ap.add_argument("--demixd-args", default="")
    ap.add_argument("--loadgen-args", default="")
    ap.add_argument("--keep-going", action="store_true")
    ap.add_argument("--clients", type=int, default=1,
                    help="loadgen processes sharing the sessions")
    ap.add_argument("--loadgen", default="",
                    help="the demix binary for loadgen (default: the build's)")
    ap.add_argument("--demixd", default="",
                    help="the demixd binary (default: the build's)")
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--out", default="bench/results/capacity")
    a = ap.parse_args()
    counts = [int(x) for x in a.sessions.split(",")]
    if not a.max_sessions:
        a.max_sessions = max(counts) + 64
    os.makedirs(a.out, exist_ok=True)
    p, log = start_server(a, a.port)
    rows = []
    try:
        for n in counts:
            row = run_round(a, a.port, p.pid, n)
            rows.append(row)
            with open(os.path.join(a.out, "rounds.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
            if not row.get("held") and not a.keep_going:
                break
            time.sleep(3)  # the server returns slots a moment after closes
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    hdr = ("codec", "N", "held", "p50+", "p99+", "p99.9+", "lost", "batch",
           "wait p99", "us/hop", "svc rx/wr/wake/loop us", "svc max",
           "sched")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        ad = r.get("added_latency_ms") or {}
        f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
        lines.append("| " + " | ".join([
            a.codec, str(r["sessions"]), str(r.get("held")),
            f(ad.get("p50")), f(r.get("p99_added_ms")), f(ad.get("p999")),
            str(r.get("lost_hops")), f(r.get("batch_mean")),
            f((r.get("server_hop_wait_ms_le") or {}).get("0.99")),
            f(r.get("cpu_us_per_session_hop")),
            "/".join(f((ph or {}).get("us", {}).get(k)) for k in
                     ("receive", "writeable", "wake", "loop"))
            if (ph := r.get("service_phases_per_session_hop")) else "-",
            f(r.get("busiest_service_thread_cores"), 2),
            f(r.get("scheduler_cores"), 2)]) + " |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(a.out, "table.txt"), "a") as f:
        f.write(f"# {a.codec} backend={a.backend} server_cpus={a.server_cpus} "
                f"client_cpus={a.client_cpus} demixd_args={a.demixd_args!r} "
                f"loadgen_args={a.loadgen_args!r}\n{table}\n")
    held = [r["sessions"] for r in rows if r.get("held")]
    print(f"largest held: {max(held) if held else 0}")


if __name__ == "__main__":
    main()
