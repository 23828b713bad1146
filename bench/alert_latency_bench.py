#!/usr/bin/env python3
"""Alert latency: from the incident's decision (the end of `group_wait`) to the
webhook receiver having the POST.

Rig: scripts/rig.py's, as bench/failover_bench.py has it (redis master + 2
replicas + 3 sentinels on 127.0.0.2-4, moto, 2 route tables) with sentinel-vip
running with a generic webhook sink pointed at a receiver in this process
(127.0.0.1). N `SENTINEL FAILOVER`s, one after the other.

Decision time: the daemon logs one `incident` line (JSON log, wall-clock
timestamp in µs) when an incident falls due, just before it renders the message
and queues it for each sink (src/daemon/alerts.rs `send`). Receipt time: the
receiver's wall clock once the whole POST (headers and body) is read. Both
clocks are this machine's; they are paired by the Standard Webhooks `webhook-id`
header, which is `<incident key>-<state>`, the same key and state the log line
carries. Nothing in src/ is instrumented for this.

Usage: bench/alert_latency_bench.py [--runs 20] [--group-wait 2s] [--bin PATH]
       [--out DIR]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "scripts")]
from failover_bench import pct  # noqa: E402
from rig import ROOT, Rig  # noqa: E402  (the one rig: scripts/rig.py)


class Receiver:
    """Records (wall time the POST was complete, webhook-id, body) for each POST."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        recv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                t = time.time()
                with recv.lock:
                    recv.got.append((t, self.headers.get("webhook-id"), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.got)


def parse_ts(s):
    """RFC 3339 with up to 9 fractional digits -> unix seconds."""
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    base = datetime.datetime.fromisoformat(m.group(1) + (m.group(3) if m.group(3) != "Z" else "+00:00"))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--group-wait", default="2s")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "sentinel-vip"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    recv = Receiver()
    work = tempfile.mkdtemp(prefix="sentinel-vip-alert.")
    rig = Rig(work, 2, routes=True)
    try:
        cfg = rig.daemon_config("alerts.yaml", extra=(
            f"log:\n  format: json\nalerts:\n  group_wait: {args.group_wait}\n  webhooks:\n"
            f"    - {{ name: bench, kind: generic, url: \"http://127.0.0.1:{recv.port}/hook\" }}\n"))
        log = os.path.join(work, "d.log")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", SENTINEL_VIP_LOG="info")
        rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=log)
        end = time.time() + 30
        while '"ready"' not in open(log).read():
            if time.time() > end:
                sys.exit("sentinel-vip did not become ready:\n" + open(log).read())
            time.sleep(0.05)
        for i in range(args.runs):
            rig.ready_for_failover()
            before = rig.master()
            n0 = recv.count()
            rig.ask_failover()
            end = time.time() + 60
            while recv.count() == n0:
                if time.time() > end:
                    sys.exit("no alert received:\n" + open(log).read()[-3000:])
                time.sleep(0.01)
            # A slow failover can be told twice (firing, then resolved): let
            # the incident settle before the next one.
            time.sleep(0.5)
            print(f"failover {i + 1:>2}/{args.runs}: from {before}: {recv.count() - n0} message(s)", flush=True)
        time.sleep(1)
        lines = [json.loads(x) for x in open(log) if x.startswith("{")]
    finally:
        rig.close()
        recv.server.shutdown()
    decided = {}
    for x in lines:
        if x.get("message") == "incident":
            decided[f"{x['key']}-{x['state']}"] = parse_ts(x["timestamp"])
    pairs = []
    for t, wid, body in recv.got:
        if wid in decided:
            pairs.append({"webhook_id": wid, "decided_unix": decided[wid], "received_unix": t,
                          "latency_ms": (t - decided[wid]) * 1e3})
    xs = [p["latency_ms"] for p in pairs]
    if not xs:
        sys.exit("no message paired with its decision")
    states = {}
    for p in pairs:
        st = p["webhook_id"].rsplit("-", 1)[1]
        states[st] = states.get(st, 0) + 1
    result = {"failovers": args.runs, "group_wait": args.group_wait, "messages": len(recv.got),
              "paired": len(pairs), "by_state": states,
              "median_ms": statistics.median(xs), "p95_ms": pct(xs, 95), "min_ms": min(xs), "max_ms": max(xs),
              "goal_ms": 50.0, "pairs": pairs}
    md = (f"| alert latency (incident decided -> receiver has the POST), {args.runs} failovers, "
          f"{len(pairs)} messages {states} | median {result['median_ms']:.1f} ms | p95 {result['p95_ms']:.1f} ms "
          f"| max {result['max_ms']:.1f} ms |\n")
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "alert_latency.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "alert_latency.md"), "w") as f:
        f.write(md)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
