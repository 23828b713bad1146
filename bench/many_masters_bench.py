#!/usr/bin/env python3
"""Many masters at once: N masters (default 100) x 2 route tables switch together.

Three real sentinels monitor N master names (addresses with nothing behind
them: only the sentinels' view matters). All N are switched at once, on every
sentinel (SENTINEL REMOVE + MONITOR at the new address, as after a host that
carried them all died); the daemon finds the new majority at its next reconcile
(every 1 s) and must move 2N routes. EC2 is moto behind bench/ec2_proxy.py,
which adds --delay-ms per request and enforces an account bucket for mutating
calls (--limit-rate/s, --limit-burst at once; `RequestLimitExceeded` beyond).

Measured: time from the switch until every route is right (polled on moto
directly), throttled answers the proxy sent, the daemon's peak RSS. The
theoretical best under the bucket is (2N - burst) / rate seconds after the
first write.

--kill-writer kills the designated writer (SIGKILL) right after the switch:
the standbys must move every route.

--watchers W (default 1) runs W daemons, one per sentinel, each with its
`local_sentinel` (the designated writer and standbys), all behind the same
proxy and the same account bucket: the mutating calls that reached the proxy
(`writes_total`, ReplaceRoute + CreateRoute, throttled ones included) are the
deployment's, and each watcher's `sentinel_vip_standby_checks_total` says what
its standby checks found.

Usage: bench/many_masters_bench.py [--masters N] [--limit-rate 20] [--limit-burst 20]
       [--write-rate PER_S,BURST (daemon's aws.write_rate; default = the limit)]
       [--watchers 1] [--delay-ms 50] [--bin PATH] [--out DIR] [--tag NAME]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "scripts")]
from failover_bench import RawEc2  # noqa: E402
from rig import HOSTS, ROOT, VENV, Rig, free_port, wait_daemon_settled  # noqa: E402  (the one rig: scripts/rig.py)


def metric(http, name, labels=None):
    """The value of `name` (with `labels` in its braces, when given) in the daemon's /metrics; None if absent."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + (("{" ) if labels else " ")) and (labels is None or labels in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_proxy(procs, upstream, args):
    p = subprocess.Popen([os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "ec2_proxy.py"),
                          "--upstream", upstream, "--delay-ms", str(args.delay_ms),
                          "--write-rate", str(args.limit_rate), "--write-burst", str(args.limit_burst)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.append(p)
    line = p.stdout.readline()
    if not line.startswith("listening"):
        sys.exit("proxy did not start")
    return int(line.split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masters", type=int, default=100)
    ap.add_argument("--tables", type=int, default=2)
    ap.add_argument("--limit-rate", type=float, default=20.0)
    ap.add_argument("--limit-burst", type=int, default=20)
    ap.add_argument("--write-rate", default=None, help="daemon aws.write_rate as PER_S,BURST")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "sentinel-vip"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--tag", default="paced")
    ap.add_argument("--keep-log", default=None, help="copy the (first) daemon's log here")
    ap.add_argument("--watchers", type=int, default=1, help="daemons, one per sentinel (local_sentinel set when > 1)")
    ap.add_argument("--kill-writer", action="store_true",
                    help="with --watchers > 1: SIGKILL the designated writer (the first sentinel's watcher) right after the switch")
    args = ap.parse_args()
    n, k = args.masters, args.tables
    rate, burst = (args.write_rate.split(",") if args.write_rate else (args.limit_rate, args.limit_burst))
    work = tempfile.mkdtemp(prefix="sentinel-vip-many.")
    # Three sentinels that watch nothing yet; moto with a VPC and a subnet.
    rig = Rig(work, tables=0, nodes=0, monitor=False)
    try:
        moto, sp = rig.moto, rig.sp
        proxy = start_proxy(rig.procs, f"127.0.0.1:{moto}", args)
        old = lambda i: (f"127.0.{1 + i // 250}.{1 + i % 250}", 7000)
        new = lambda i: (f"127.1.{1 + i // 250}.{1 + i % 250}", 7000)
        sentinels = [redis.Redis(host=h, port=sp) for h in HOSTS]
        for r in sentinels:
            p = r.pipeline(transaction=False)
            for i in range(n):
                ip, port = old(i)
                p.execute_command("SENTINEL", "MONITOR", f"m{i}", ip, port, 2)
                p.execute_command("SENTINEL", "SET", f"m{i}", "down-after-milliseconds", 3600000)
            p.execute()
        ec2, vpc, subnet = rig.ec2, rig.vpc, rig.subnet
        eni_old = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        eni_new = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
        lines = [f'sentinels: [{", ".join(chr(34) + h + ":" + str(sp) + chr(34) for h in HOSTS)}]',
                 f"aws:\n  region: us-east-1\n  endpoint_url: http://127.0.0.1:{proxy}\n"
                 f"  write_rate: {{ per_second: {rate}, burst: {burst} }}", "masters:"]
        tables = []
        for i in range(n):
            rtbs = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(k)]
            vip = f"172.16.{i // 250}.{1 + i % 250}/32"
            for rtb in rtbs:
                ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=vip, NetworkInterfaceId=eni_old)
            tables += rtbs
            (oip, port), (nip, _) = old(i), new(i)
            lines.append(f'  m{i}:\n    vip: {vip}\n    route_tables: [{", ".join(rtbs)}]\n    nodes:\n'
                         f'      "{oip}:{port}": {{ network_interface_id: {eni_old} }}\n'
                         f'      "{nip}:{port}": {{ network_interface_id: {eni_new} }}')
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", SENTINEL_VIP_LOG="info",
                   NO_COLOR="1")
        daemons = []  # (process, http port, log)
        for w in range(args.watchers):
            http = free_port()
            local = f'local_sentinel: "{HOSTS[w]}:{sp}"\n' if args.watchers > 1 else ""
            cfg = os.path.join(work, f"many-{w}.yaml")
            with open(cfg, "w") as f:
                f.write("\n".join(lines + [f"reconcile:\n  interval: 1s\nhttp:\n  listen: 127.0.0.1:{http}\n{local}"]))
            log = os.path.join(work, f"daemon-{w}.log")
            daemons.append((rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=log), http, log))
        for _, http, log in daemons:
            wait_daemon_settled(http, log)
        if args.watchers > 1:
            # Every watcher sees every other one alive (CLIENT LIST), so one of them is the writer.
            end = time.time() + 60
            while not all(metric(http, "sentinel_vip_watchers_alive") == args.watchers for _, http, _ in daemons):
                if time.time() > end:
                    sys.exit("the watchers never saw each other alive")
                time.sleep(0.2)
        d = daemons[0][0]
        raw = RawEc2(moto)

        def right():
            body = "Action=DescribeRouteTables&Version=2016-11-15&" + "&".join(
                f"RouteTableId.{j + 1}={t}" for j, t in enumerate(tables))
            xml = raw.call(body)
            return len(re.findall(eni_new, xml))

        # The switch: every master moves, on every sentinel at once.
        def switch(r):
            p = r.pipeline(transaction=False)
            for i in range(n):
                ip, port = new(i)
                p.execute_command("SENTINEL", "REMOVE", f"m{i}")
                p.execute_command("SENTINEL", "MONITOR", f"m{i}", ip, port, 2)
                p.execute_command("SENTINEL", "SET", f"m{i}", "down-after-milliseconds", 3600000)
            p.execute()
        t0 = time.time()
        threads = [threading.Thread(target=switch, args=(r,)) for r in sentinels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        switched = time.time() - t0
        if args.kill_writer:
            daemons[0][0].kill()
        progress = []
        deadline = time.time() + 300
        while time.time() < deadline:
            ok = right()
            progress.append((round(time.time() - t0, 3), ok))
            if ok >= n * k:
                break
            time.sleep(0.1)
        done = time.time() - t0
        # Standbys check rank x standby_check_after (1 s) after their turn: let the last ones finish.
        time.sleep(args.watchers)
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{proxy}/__stats", timeout=5).read())
        d = daemons[-1][0] if args.kill_writer else d
        status = open(f"/proc/{d.pid}/status").read()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        per_watcher = []
        for _, http, _ in daemons[1:] if args.kill_writer else daemons:
            per_watcher.append({
                "writer_rank": metric(http, "sentinel_vip_writer_rank"),
                "standby_checks": {r: metric(http, "sentinel_vip_standby_checks_total", f'result="{r}"') or 0
                                   for r in ("already_right", "written", "unreadable")},
            })
    finally:
        rig.close()
    writes = n * k
    first = stats["first_write_seen"] - t0 if stats["first_write_seen"] else None
    last = stats["last_write_forwarded"] - t0 if stats["last_write_forwarded"] else None
    best = max(0.0, (writes - args.limit_burst) / args.limit_rate)
    writing = (last - first) if first is not None and last is not None else None
    result = {
        "tag": args.tag, "masters": n, "tables_per_master": k, "routes": writes,
        "limit": {"per_second": args.limit_rate, "burst": args.limit_burst}, "delay_ms": args.delay_ms,
        "daemon_write_rate": {"per_second": float(rate), "burst": int(burst)},
        "switch_s": switched, "all_right_s": done, "routes_right": progress[-1][1] if progress else 0,
        "first_write_s": first, "last_write_s": last, "writing_s": writing,
        "best_writing_s": best, "writing_over_best": (writing / best) if writing and best else None,
        "throttled": stats["throttled"], "requests": stats["requests"],
        "watchers": args.watchers, "writer_killed_at_switch": args.kill_writer,
        "writes_total": stats["requests"].get("ReplaceRoute", 0) + stats["requests"].get("CreateRoute", 0),
        "writes_over_routes": (stats["requests"].get("ReplaceRoute", 0) + stats["requests"].get("CreateRoute", 0)) / writes,
        "per_watcher": per_watcher,
        "rss_mb": rss_kb / 1024, "peak_rss_mb": hwm_kb / 1024, "progress": progress,
    }
    if args.keep_log:
        shutil.copy(os.path.join(work, "daemon-0.log"), args.keep_log)
    md = (f"| {args.tag}: {args.watchers} watcher(s), daemon write_rate {float(rate):g}/s burst {burst} | {n} x {k} routes | "
          f"limit {args.limit_rate:g}/s burst {args.limit_burst} | all right after {done:.2f} s (writes {first:.2f}→{last:.2f} s, "
          f"best {best:.1f} s) | writes {result['writes_total']} | throttled {stats['throttled']} | "
          f"RSS {rss_kb / 1024:.1f} MB, peak {hwm_kb / 1024:.1f} MB |")
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"many_masters_{args.tag}.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(args.out, "many_masters.md"), "a") as f:
        f.write(md + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
