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
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover_bench import HOSTS, ROOT, VENV, free_port, wait_port  # noqa: E402


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
    procs = []
    try:
        moto = free_port()
        sp = free_port()
        procs.append(subprocess.Popen([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i, h in enumerate(HOSTS):
            conf = os.path.join(work, f"s{i}.conf")
            with open(conf, "w") as f:
                f.write(f"bind {h}\nport {sp}\nprotected-mode no\ndir {work}\nlogfile s{i}.log\nsentinel announce-ip {h}\n")
            procs.append(subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=subprocess.DEVNULL))
        for h in HOSTS:
            wait_port(h, sp)
        wait_port("127.0.0.1", moto)
        addr = lambda i: (f"127.0.{1 + i // 250}.{1 + i % 250}", 7000)
        for h in HOSTS:
            r = redis.Redis(host=h, port=sp)
            p = r.pipeline(transaction=False)
            for i in range(n):
                ip, port = addr(i)
                p.execute_command("SENTINEL", "MONITOR", f"m{i}", ip, port, 2)
                p.execute_command("SENTINEL", "SET", f"m{i}", "down-after-milliseconds", 3600000)
            p.execute()
        ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{moto}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
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
        log = open(os.path.join(work, "daemon.log"), "w")
        d = subprocess.Popen([args.bin, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=log, env=env)
        procs.append(d)
        get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=5).read().decode()
        end = time.time() + 120
        while True:
            try:
                st = json.loads(get("/status"))
                if st["reconciles"] >= 2 and all(m["applied"] for m in st["masters"]):
                    break
            except OSError:
                pass
            if time.time() > end:
                sys.exit("daemon never settled:\n" + open(os.path.join(work, "daemon.log")).read()[-3000:])
            time.sleep(0.2)
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
        for p in reversed(procs):
            p.kill()
        for p in procs:
            p.wait()
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
