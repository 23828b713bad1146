#!/usr/bin/env python3
"""Reconcile at scale: one daemon, N masters (default 1,000) x 1 route table each.

Three real sentinels monitor N master names (addresses with nothing behind
them: only the sentinels' view matters here), moto holds N route tables whose
VIP routes are already right. The daemon reconciles every 2 s; we read its own
figures: reconcile duration (/status) and EC2 calls per reconcile (/metrics
sentinel_vip_ec2_calls_total), plus its RSS. A right state must cost only
batched reads and no writes.

Usage: bench/scale_bench.py [--masters N] [--bin PATH] [--out DIR]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from rig import HOSTS, ROOT, Rig, free_port, wait_daemon_settled  # noqa: E402  (the one rig: scripts/rig.py)


def ec2_calls(metrics):
    out = {}
    for m in re.finditer(r'sentinel_vip_ec2_calls_total\{operation="(\w+)",result="(\w+)"\} (\d+)', metrics):
        out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masters", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "sentinel-vip"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    n = args.masters
    work = tempfile.mkdtemp(prefix="sentinel-vip-scale.")
    # Three sentinels that watch nothing yet; moto with a VPC and a subnet.
    rig = Rig(work, tables=0, nodes=0, monitor=False)
    try:
        moto, sp = rig.moto, rig.sp
        addr = lambda i: (f"127.0.{1 + i // 250}.{1 + i % 250}", 7000)
        for h in HOSTS:
            r = redis.Redis(host=h, port=sp)
            p = r.pipeline(transaction=False)
            for i in range(n):
                ip, port = addr(i)
                p.execute_command("SENTINEL", "MONITOR", f"m{i}", ip, port, 2)
                p.execute_command("SENTINEL", "SET", f"m{i}", "down-after-milliseconds", 3600000)
            p.execute()
        ec2, vpc, subnet = rig.ec2, rig.vpc, rig.subnet
        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        lines = [f'sentinels: [{", ".join(chr(34) + h + ":" + str(sp) + chr(34) for h in HOSTS)}]',
                 f"aws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:{moto}", "masters:"]
        for i in range(n):
            rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            vip = f"172.16.{i // 250}.{1 + i % 250}/32"
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=vip, NetworkInterfaceId=eni)
            ip, port = addr(i)
            lines.append(f'  m{i}:\n    vip: {vip}\n    route_tables: [{rtb}]\n    nodes:\n      "{ip}:{port}": {{ network_interface_id: {eni} }}')
        http = free_port()
        lines.append(f"reconcile:\n  interval: 2s\nhttp:\n  listen: 127.0.0.1:{http}\n")
        cfg = os.path.join(work, "scale.yaml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", SENTINEL_VIP_LOG="warn")
        log = os.path.join(work, "daemon.log")
        d = rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=log)
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=5).read().decode()
        st = wait_daemon_settled(http, log)
        durations, calls = [], []
        last = st["reconciles"]
        before = ec2_calls(get("/metrics"))
        while len(durations) < args.rounds:
            st = json.loads(get("/status"))
            if st["reconciles"] > last:
                after = ec2_calls(get("/metrics"))
                rounds = st["reconciles"] - last
                durations.append(st["last_reconcile_ms"])
                calls.append({k: (after.get(k, 0) - before.get(k, 0)) / rounds for k in set(after) | set(before)})
                last, before = st["reconciles"], after
            time.sleep(0.05)
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{d.pid}/status").read()).group(1))
    finally:
        rig.close()
    reads = statistics.median([c.get("DescribeRouteTables", 0) for c in calls])
    writes = max(c.get("ReplaceRoute", 0) + c.get("CreateRoute", 0) for c in calls)
    md = (f"| masters x tables | reconcile median ms | min | max | DescribeRouteTables calls / reconcile | writes | daemon RSS MB |\n"
          f"|---|---|---|---|---|---|---|\n"
          f"| {n} x 1 | {statistics.median(durations):.0f} | {min(durations):.0f} | {max(durations):.0f} | {reads:.0f} | {writes:.0f} | {rss_kb / 1024:.1f} |\n")
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "scale.json"), "w") as f:
        json.dump({"masters": n, "reconcile_ms": durations, "ec2_calls_per_reconcile": calls, "rss_kb": rss_kb}, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
