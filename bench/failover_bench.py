#!/usr/bin/env python3
"""Failover latency, side by side in one run, measured the same way from outside.

Rig: redis master + 2 replicas + 3 sentinels on 127.0.0.2-4, moto as EC2, K
route tables (--tables 2,4,8: one rig per K). EC2 is reached either directly
(raw moto, which serves one request at a time) or through bench/ec2_proxy.py,
which adds a fixed delay to every request, concurrently per connection, as a
regional endpoint answers (--delays 0,50: 0 = raw moto). For each contender (the seed's client-reconfig-script + AWS CLI,
a plain Python peer, sentinel-vip), N `SENTINEL FAILOVER`s. An observer takes
the first `+switch-master` it receives from any sentinel as t0 and polls
DescribeRouteTables over a raw keep-alive HTTP connection until every table
points at the new master's ENI: latency = that moment - t0.

The limit for a contender that writes the tables together is one delay plus K
moto service times (moto still serialises): the results carry it per cell.

Usage: bench/failover_bench.py [--runs N] [--script-runs N] [--tables 2,4,8]
       [--delays 0,50] [--only a,b] [--bin PATH] [--out DIR] [--name failover]
       [--base RESULTS.json (speedup against its sentinel-vip medians)]
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from rig import HOSTS, ROOT, VENV, Rig  # noqa: E402  (the one rig: scripts/rig.py)


class RawEc2:
    """DescribeRouteTables over one keep-alive connection (moto ignores signatures)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(self, body):
        self.conn.request("POST", "/", body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x",
        })
        return self.conn.getresponse().read().decode()

    def targets(self, tables):
        body = "Action=DescribeRouteTables&Version=2016-11-15&" + "&".join(
            f"RouteTableId.{i + 1}={t}" for i, t in enumerate(tables))
        xml = self.call(body)
        out = {}
        for tbl in re.findall(r"<routeTableId>(rtb-[0-9a-f]+)</routeTableId>\s*<routeSet>(.*?)</routeSet>", xml, re.S):
            m = re.search(r"<destinationCidrBlock>172\.16\.0\.10/32</destinationCidrBlock>(.*?)</item>", tbl[1], re.S)
            eni = re.search(r"<networkInterfaceId>(eni-[0-9a-f]+)</networkInterfaceId>", m.group(1)) if m else None
            out[tbl[0]] = eni.group(1) if eni else None
        return out


def write_nodes_map(rig, work):
    """`<ip> <eni>` per node, for bench/peer.py and bench/reconfig.sh."""
    with open(os.path.join(work, "nodes.map"), "w") as f:
        for h, e in rig.eni_of.items():
            f.write(f"{h} {e}\n")


def first_switch_listener(rig, box):
    """Subscribes to +switch-master on every sentinel; records every receipt."""
    def run(s):
        p = redis.Redis(host=s.connection_pool.connection_kwargs["host"], port=rig.sp).pubsub()
        p.subscribe("+switch-master")
        for m in p.listen():
            if m["type"] == "message":
                t = time.perf_counter()
                with box["lock"]:
                    box["seen"].append((t, m["data"].decode()))
    box["seen"] = []
    for s in rig.sentinels:
        threading.Thread(target=run, args=(s,), daemon=True).start()


DEADLINE_S = 60  # per failover: the switch seen and every route moved


class Missed(Exception):
    """One failover the contender did not finish within the deadline."""


def one_failover(rig, raw, box):
    rig.ready_for_failover()
    before = rig.master()
    start = time.perf_counter()
    rig.ask_failover()
    deadline = time.time() + DEADLINE_S
    t0 = payload = None
    while time.time() < deadline and t0 is None:
        with box["lock"]:
            # The first switch *of this failover*: late ones of the previous
            # failover (a slow sentinel) start from another master.
            hits = [(t, p) for t, p in box["seen"] if t >= start and p.split()[1] == before]
        if hits:
            t0, payload = min(hits)
        else:
            time.sleep(0.001)
    if t0 is None:
        raise Missed(f"no +switch-master seen within {DEADLINE_S} s")
    new_ip = payload.split()[3]
    want = rig.eni_of[new_ip]
    while time.time() < deadline:
        cur = raw.targets(rig.tables)
        if all(cur.get(t) == want for t in rig.tables):
            return (time.perf_counter() - t0) * 1e3, before, new_ip
    raise Missed(f"route never moved to {want} within {DEADLINE_S} s")


def round_trip(raw, tables, n=50):
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        raw.targets(tables)
        xs.append((time.perf_counter() - t) * 1e3)
    return statistics.median(xs)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def start_proxy(rig, delay_ms):
    """bench/ec2_proxy.py in front of the rig's moto; returns its endpoint."""
    p = subprocess.Popen([os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "ec2_proxy.py"),
                          "--upstream", f"127.0.0.1:{rig.moto}", "--delay-ms", str(delay_ms)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rig.procs.append(p)
    line = p.stdout.readline()
    if not line.startswith("listening"):
        sys.exit("latency proxy did not start")
    return f"http://127.0.0.1:{int(line.split()[1])}"


def service_time(raw, rig, n=30):
    """moto's own time for one ReplaceRoute (to the route's current target: no change)."""
    cur = raw.targets(rig.tables)
    t, eni = rig.tables[0], cur[rig.tables[0]]
    xs = []
    for _ in range(n):
        s = time.perf_counter()
        raw.call(f"Action=ReplaceRoute&Version=2016-11-15&RouteTableId={t}&DestinationCidrBlock=172.16.0.10%2F32"
                 f"&NetworkInterfaceId={eni}")
        xs.append((time.perf_counter() - s) * 1e3)
    return statistics.median(xs)


def run_contender(contender, rig, raw, box, endpoint, runs, args, work, tag):
    stop = None
    if contender == "script":
        shutil.copy(os.path.join(ROOT, "bench", "reconfig.sh"), os.path.join(work, "reconfig.sh"))
        os.chmod(os.path.join(work, "reconfig.sh"), 0o755)
        with open(os.path.join(work, "bench.env"), "w") as f:
            f.write(f'AWS="{os.path.join(VENV, "aws")}"\nENDPOINT="{endpoint}"\nTABLES="{" ".join(rig.tables)}"\n'
                    'export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n')
        for s in rig.sentinels:
            s.execute_command("SENTINEL", "SET", "mymaster", "client-reconfig-script", os.path.join(work, "reconfig.sh"))
        stop = lambda: [s.execute_command("SENTINEL", "SET", "mymaster", "client-reconfig-script", "") for s in rig.sentinels]
    elif contender == "peer":
        log = os.path.join(work, f"peer-{tag}.log")
        p = rig.spawn([os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "peer.py"), endpoint,
                       ",".join(rig.tables), os.path.join(work, "nodes.map"),
                       ",".join(f"{h}:{rig.sp}" for h in HOSTS)], "peer", log=log)
        end = time.time() + 30
        while "peer ready" not in open(log).read():
            if time.time() > end:
                sys.exit("peer did not start")
            time.sleep(0.05)
        stop = p.kill
    elif contender == "sentinel-vip":
        cfg = rig.daemon_config(f"sv-{tag}.yaml", endpoint)
        log = os.path.join(work, f"sv-{tag}.log")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", SENTINEL_VIP_LOG="info", NO_COLOR="1")
        p = rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=log)
        end = time.time() + 30
        while "ready" not in open(log).read():
            if time.time() > end:
                sys.exit("sentinel-vip did not become ready:\n" + open(log).read())
            time.sleep(0.05)
        stop = p.terminate
    xs, missed = [], None
    for i in range(runs):
        try:
            ms, before, after = one_failover(rig, raw, box)
        except Missed as e:
            # Kept: the failovers finished so far, marked short of `runs`; the
            # other contenders and cells still run.
            print(f"{tag:>10} {contender:>12} failover {i + 1:>2}/{runs}: {e}; stopping this contender here", flush=True)
            missed = str(e)
            break
        xs.append(ms)
        print(f"{tag:>10} {contender:>12} failover {i + 1:>2}/{runs}: {before} -> {after}: {ms:8.1f} ms", flush=True)
    if stop:
        stop()
    if contender == "sentinel-vip":
        # The daemon's own figures, one pair per logged write: event received ->
        # every table written, and the write alone (the tables' ReplaceRoutes,
        # started together); the difference is the event's way to the write.
        pairs = re.findall(r'cause="\+switch-master".*?since_event_ms=([0-9.]+) write_ms=([0-9.]+)', open(log).read())
        return xs, missed, ([float(a) for a, _ in pairs], [float(b) for _, b in pairs])
    return xs, missed, ([], [])


def delay_label(c):
    return "raw moto" if not c["delay_ms"] else f"{c['delay_ms']:g} ms"


def summarise(xs):
    return {"median_ms": statistics.median(xs), "p95_ms": pct(xs, 95), "min_ms": min(xs), "max_ms": max(xs),
            "n": len(xs), "all_ms": xs}


def own_summary(xs):
    """The daemon's own figures for a cell (keys as in earlier results files)."""
    return {"median": statistics.median(xs), "p95": pct(xs, 95), "n": len(xs)}


def base_median(path, tables, delay_ms):
    """sentinel-vip's median for this cell in another run's results (None: not there)."""
    if not path:
        return None
    for c in json.load(open(path))["cells"]:
        if c["tables"] == tables and c["delay_ms"] == delay_ms and "sentinel-vip" in c["contenders"]:
            return c["contenders"]["sentinel-vip"]["median_ms"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--script-runs", type=int, default=None, help="failovers per cell for the (slow) script path")
    ap.add_argument("--tables", default="2,4,8")
    ap.add_argument("--delays", default="0,50", help="injected API delay per request, ms (0 = raw moto)")
    ap.add_argument("--only", default="script,peer,sentinel-vip")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "sentinel-vip"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--name", default="failover", help="results file stem (NAME.json, NAME.md)")
    ap.add_argument("--base", default=None,
                    help="results JSON whose sentinel-vip medians give `speedup` when this run has no sentinel-vip "
                         "(e.g. the slow script path run on its own: --only script --base bench/results/failover.json)")
    args = ap.parse_args()
    script_runs = args.script_runs or args.runs
    cells = []
    for k in [int(x) for x in args.tables.split(",")]:
        work = tempfile.mkdtemp(prefix="sentinel-vip-bench.")
        rig = Rig(work, k, routes=True)
        try:
            write_nodes_map(rig, work)
            raw = RawEc2(rig.moto)
            box = {"lock": threading.Lock()}
            first_switch_listener(rig, box)
            rtt = round_trip(raw, rig.tables)
            svc = service_time(raw, rig)
            for d in [float(x) for x in args.delays.split(",")]:
                endpoint = start_proxy(rig, d) if d > 0 else rig.endpoint
                via = RawEc2(int(endpoint.rsplit(":", 1)[1]))
                cell = {"tables": k, "delay_ms": d, "moto_round_trip_ms": rtt, "moto_replace_route_ms": svc,
                        "api_round_trip_ms": round_trip(via, rig.tables, 20),
                        "limit_ms": d + k * svc, "contenders": {}}
                for contender in args.only.split(","):
                    runs = script_runs if contender == "script" else args.runs
                    xs, missed, (internal, writes) = run_contender(contender, rig, raw, box, endpoint, runs, args, work,
                                                           f"{k}t-{d:g}ms")
                    if not xs:
                        # Recorded, not dropped: "missed its first failover" is a result.
                        cell.setdefault("missed", {})[contender] = f"0 of {runs} failovers finished: {missed}"
                        continue
                    cell["contenders"][contender] = summarise(xs)
                    if missed:
                        cell["contenders"][contender]["incomplete"] = f"{len(xs)} of {runs} failovers finished: {missed}"
                    if internal:
                        cell["sentinel_vip_event_to_written_ms"] = own_summary(internal)
                        cell["sentinel_vip_write_ms"] = own_summary(writes)
                base = cell["contenders"].get("sentinel-vip", {}).get("median_ms") or base_median(args.base, k, d)
                for c in cell["contenders"].values():
                    c["speedup"] = c["median_ms"] / base if base else None
                if base and "sentinel-vip" in cell["contenders"]:
                    cell["sentinel_vip_over_limit"] = base / cell["limit_ms"]
                cells.append(cell)
                # Cells done so far survive an interrupted run.
                os.makedirs(args.out, exist_ok=True)
                with open(os.path.join(args.out, args.name + ".partial.json"), "w") as f:
                    json.dump({"runs": args.runs, "script_runs": script_runs, "cells": cells}, f, indent=2)
        finally:
            rig.close()
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    lines = ["| tables | API delay | path | n | median ms | p95 ms | median / sentinel-vip | limit ms (delay + tables x moto) | sentinel-vip / limit |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        for name, x in c["contenders"].items():
            ratio = f"{x['speedup']:.1f}x" if x.get("speedup") else "-"
            over = f"{c['sentinel_vip_over_limit']:.2f}" if name == "sentinel-vip" and "sentinel_vip_over_limit" in c else ""
            lines.append(f"| {c['tables']} | {delay_label(c)} "
                         f"| {name}{' (incomplete)' if x.get('incomplete') else ''} | {x['n']} | {x['median_ms']:.1f} | {x['p95_ms']:.1f} | {ratio} | {c['limit_ms']:.1f} | {over} |")
    lines.append("")
    for c in cells:
        own = c.get("sentinel_vip_event_to_written_ms")
        lines.append(f"- {c['tables']} tables, {delay_label(c)}: "
                     f"moto DescribeRouteTables {c['moto_round_trip_ms']:.1f} ms, moto ReplaceRoute {c['moto_replace_route_ms']:.1f} ms, "
                     f"API round trip seen by clients {c['api_round_trip_ms']:.1f} ms"
                     + (f"; sentinel-vip's own log (event -> every table written) median {own['median']:.1f} ms, p95 {own['p95']:.1f} ms" if own else "")
                     + (f" (the writes alone: median {c['sentinel_vip_write_ms']['median']:.1f} ms)" if "sentinel_vip_write_ms" in c else ""))
        for name, why in c.get("missed", {}).items():
            lines.append(f"- {c['tables']} tables, {delay_label(c)}: {name}: {why}")
    table = "\n".join(lines)
    with open(os.path.join(args.out, args.name + ".md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, args.name + ".json"), "w") as f:
        json.dump({"runs": args.runs, "script_runs": script_runs, "cells": cells}, f, indent=2)
    partial = os.path.join(args.out, args.name + ".partial.json")
    if os.path.exists(partial):
        os.remove(partial)
    print("\n" + table)


if __name__ == "__main__":
    main()
