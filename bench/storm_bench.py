#!/usr/bin/env python3
"""Event storm: 1,000 masters, a burst of >= 5,000 sentinel events in one second
while majority reads and route writes are in flight.

The rig (scripts/rig.py): three real sentinels monitor N master names (addresses
with nothing behind them: only the sentinels' view matters), moto holds one
route table per master. The daemon runs as a separate process (the binary named
by --bin) with `reconcile.interval` --interval (2 s), so a majority read of all
N masters is in flight much of the time (one takes ~0.6 s in a release build on a
quiet machine, seconds in a debug build on a loaded one).

The storm. Sentinels refuse client PUBLISH on every channel but the hello
channel, so a burst of real `+sdown`/`-sdown` cannot be had from them on demand.
The daemon is therefore also given a fourth "sentinel": a plain redis-server
(not a sentinel) on which this script PUBLISHes. `sentinel-vip run` does not
check `ROLE` on its endpoints (only `sentinel-vip check` does, and says so), so
its watcher subscribes there like anywhere else, and its majority reads count
that endpoint as not answering (SENTINEL commands fail): the majority of 4 is 3,
held by the three real sentinels. Every event goes the whole way: the watcher's
socket, its parser, the forwarder, the controller's inbox, the decision core,
the alert task's inbox.

Reads and writes in flight: just before the burst, --switch masters move to a
new address on all three sentinels (SENTINEL REMOVE + MONITOR, in pipelines of
10 masters: one pipeline of 100 held each sentinel's event loop for over 2 s and
TILTed all three for 30 s), and a SIGHUP (config unchanged) at the burst's start
makes the daemon read the majority at once, so the writes that read dispatches
run during the burst (route_writes_during_burst: those finished within it;
sentinels_tilted: +tilt in the sentinels' logs).

Measured (from the daemon's own /metrics, before and after):
- events_per_s: events published / the burst's wall time (and received, from
  sentinel_vip_events_total of the publishing endpoint);
- p99_input_ms: 99th percentile of sentinel_vip_input_delay_seconds over the
  burst (an event's arrival at its watcher -> the core handling it: includes
  the inbox), as the upper bound of the histogram bucket it falls in;
  input_delay_share_within_ms: the share of the burst's events within each
  bucket's bound;
- lost_results: sentinel_vip_results_lost_total (results the core's deadline
  gave up on; job results travel on a channel that cannot drop them);
- routes right: every master's route on the majority's master afterwards;
- rss_mb: the daemon's VmRSS after (peak: VmHWM);
- load_average_1m: the machine's, before the burst and after (the daemon shares
  its cores with the rig: 3 sentinels watching N masters, moto, the publisher).

Usage: bench/storm_bench.py [--masters 1000] [--switch 100] [--events 6000]
       [--bin target/debug/sentinel-vip] [--profile dev] [--out bench/results]
The daemon's log (SENTINEL_VIP_LOG) is STORM_LOG, `info` by default; it stays
in the run's temporary directory (printed at the start).
"""
import argparse
import json
import os
import re
import signal
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
from rig import HOSTS, ROOT, Rig, free_port, wait_daemon_settled, wait_port  # noqa: E402

PUBLISHER = "127.0.0.5"


def metrics(http):
    return urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10).read().decode()


def buckets(text, name):
    """Cumulative histogram buckets {le: count} of `name`."""
    out = {}
    for le, n in re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\d+)', text, re.M):
        out[float("inf") if le == "+Inf" else float(le)] = int(n)
    return out


def hist_count(text, name):
    m = re.search(rf"^{name}_count (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def counter_sum(text, name, label_filter=""):
    total = 0.0
    for labels, v in re.findall(rf'^{name}_total(\{{[^}}]*\}})? ([0-9.e+]+)', text, re.M):
        if label_filter in labels:
            total += float(v)
    return total


def p99_upper_ms(before, after):
    """The upper bound (ms) of the bucket holding the 99th percentile of the
    observations made between the two snapshots."""
    les = sorted(after)
    delta = {le: after[le] - before.get(le, 0) for le in les}
    total = delta[les[-1]]
    if total == 0:
        return None, 0
    for le in les:
        if delta[le] >= 0.99 * total:
            return (le * 1e3 if le != float("inf") else None), total
    return None, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--masters", type=int, default=1000)
    ap.add_argument("--switch", type=int, default=100)
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--interval", default="2s")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "sentinel-vip"))
    ap.add_argument("--profile", default="dev (unoptimised, line-tables debug info)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    n = args.masters
    work = tempfile.mkdtemp(prefix="sentinel-vip-storm.")
    print(f"storm: rig and daemon log in {work}", file=sys.stderr)
    rig = Rig(work, tables=0, nodes=0, monitor=False)
    try:
        sp = rig.sp
        pub_dir = os.path.join(work, "publisher")
        os.makedirs(pub_dir)
        rig.spawn(["redis-server", "--bind", PUBLISHER, "--port", str(sp), "--save", "", "--appendonly", "no",
                   "--dir", pub_dir], "publisher")
        wait_port(PUBLISHER, sp)
        old = lambda i: (f"127.0.{1 + i // 250}.{1 + i % 250}", 7000)
        new = lambda i: (f"127.1.{1 + i // 250}.{1 + i % 250}", 7000)
        sentinels = [redis.Redis(host=h, port=sp, socket_timeout=300) for h in HOSTS]
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
        all_sentinels = HOSTS + [PUBLISHER]
        lines = [f'sentinels: [{", ".join(chr(34) + h + ":" + str(sp) + chr(34) for h in all_sentinels)}]',
                 f"aws:\n  region: us-east-1\n  endpoint_url: {rig.endpoint}\n"
                 f"  write_rate: {{ per_second: 1000, burst: 1000 }}", "masters:"]
        tables = []
        for i in range(n):
            rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            vip = f"172.16.{i // 250}.{1 + i % 250}/32"
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=vip, NetworkInterfaceId=eni_old)
            tables.append(rtb)
            (oip, port), (nip, _) = old(i), new(i)
            lines.append(f'  m{i}:\n    vip: {vip}\n    route_tables: [{rtb}]\n    nodes:\n'
                         f'      "{oip}:{port}": {{ network_interface_id: {eni_old} }}\n'
                         f'      "{nip}:{port}": {{ network_interface_id: {eni_new} }}')
        http = free_port()
        lines.append(f"reconcile:\n  interval: {args.interval}\nhttp:\n  listen: 127.0.0.1:{http}\n")
        cfg = os.path.join(work, "storm.yaml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   SENTINEL_VIP_LOG=os.environ.get("STORM_LOG", "info"), NO_COLOR="1")
        log = os.path.join(work, "daemon.log")
        d = rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=log)
        wait_daemon_settled(http, log, timeout=300)
        raw = RawEc2(rig.moto)
        load_before = os.getloadavg()[0]
        before = metrics(http)
        hist0 = buckets(before, "sentinel_vip_input_delay_seconds")
        got0 = counter_sum(before, "sentinel_vip_events", f'sentinel="{PUBLISHER}:{sp}"')
        dropped0 = counter_sum(before, "sentinel_vip_alerts_inbox_dropped")

        # Reads and writes in flight: --switch masters move on every sentinel.
        # In pipelines of 10 masters: Sentinel rewrites and fsyncs its config
        # (1,000 masters long) at every MONITOR/REMOVE/SET, and one pipeline
        # of 100 masters held its event loop for over 2 s: all three entered
        # TILT for 30 s, so no majority (and no write) during the burst.
        def switch(r):
            for lo in range(0, args.switch, 10):
                p = r.pipeline(transaction=False)
                for i in range(lo, min(lo + 10, args.switch)):
                    ip, port = new(i)
                    p.execute_command("SENTINEL", "REMOVE", f"m{i}")
                    p.execute_command("SENTINEL", "MONITOR", f"m{i}", ip, port, 2)
                    p.execute_command("SENTINEL", "SET", f"m{i}", "down-after-milliseconds", 3600000)
                p.execute()
        threads = [threading.Thread(target=switch, args=(r,)) for r in sentinels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writes0 = hist_count(metrics(http), "sentinel_vip_route_update_seconds")
        # A SIGHUP (config unchanged) starts a majority read at once: it sees
        # the switch, and its route writes fall inside the burst.
        d.send_signal(signal.SIGHUP)
        # The storm: +sdown/-sdown for every master in turn, in 10 slices over 1 s.
        pub = redis.Redis(host=PUBLISHER, port=sp, socket_timeout=60)
        slices = 10
        per = (args.events + slices - 1) // slices
        t0 = time.time()
        sent = 0
        for s in range(slices):
            p = pub.pipeline(transaction=False)
            for _ in range(per):
                i = sent % n
                ip, port = old(i)
                kind = "+sdown" if (sent // n) % 2 == 0 else "-sdown"
                p.publish(kind, f"master m{i} {ip} {port}")
                sent += 1
            p.execute()
            pause = t0 + (s + 1) / slices - time.time()
            if pause > 0:
                time.sleep(pause)
        burst_s = time.time() - t0
        writes_in_burst = hist_count(metrics(http), "sentinel_vip_route_update_seconds") - writes0
        # Every event received and handled, every route right.
        deadline = time.time() + 120
        right = 0
        while time.time() < deadline:
            m = metrics(http)
            got = counter_sum(m, "sentinel_vip_events", f'sentinel="{PUBLISHER}:{sp}"') - got0
            xml = raw.call("Action=DescribeRouteTables&Version=2016-11-15&" + "&".join(
                f"RouteTableId.{j + 1}={t}" for j, t in enumerate(tables)))
            routes = dict(re.findall(r"<routeTableId>(rtb-[0-9a-f]+)</routeTableId>\s*<routeSet>(.*?)</routeSet>",
                                     xml, re.S))
            right = sum(1 for j, t in enumerate(tables)
                        if (eni_new if j < args.switch else eni_old) in routes.get(t, ""))
            handled = buckets(m, "sentinel_vip_input_delay_seconds").get(float("inf"), 0) - hist0.get(float("inf"), 0)
            if right == n and got >= sent and handled >= sent:
                break
            time.sleep(0.5)
        settled_s = time.time() - t0
        tilts = sum(open(os.path.join(work, f"sentinel-{k}.log")).read().count("+tilt") for k in range(len(HOSTS)))
        after = metrics(http)
        load_after = os.getloadavg()[0]
        status = open(f"/proc/{d.pid}/status").read()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        st = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=10).read())
    finally:
        rig.close()
    hist1 = buckets(after, "sentinel_vip_input_delay_seconds")
    p99, observed = p99_upper_ms(hist0, hist1)
    # Share of the burst's inputs handled within each bucket's bound.
    within = {("+Inf" if le == float("inf") else "%g" % (le * 1e3)):
              round((hist1[le] - hist0.get(le, 0)) / observed, 4) if observed else None
              for le in sorted(hist1)}
    got = counter_sum(after, "sentinel_vip_events", f'sentinel="{PUBLISHER}:{sp}"') - got0
    result = {
        "events_per_s": round(sent / burst_s, 1),
        "p99_input_ms": p99,
        "lost_results": int(counter_sum(after, "sentinel_vip_results_lost")),
        "input_delay_share_within_ms": within,
        "rss_mb": round(rss_kb / 1024, 1),
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "events_published": sent,
        "events_received": int(got),
        "inputs_observed": observed,
        "burst_s": round(burst_s, 3),
        "masters": n,
        "masters_switched_during_burst": args.switch,
        "routes_right_after": right,
        "all_routes_right": right == n,
        "settled_s": round(settled_s, 2),
        "reconciles": st.get("reconciles"),
        "sentinels_tilted": tilts,
        "route_writes_during_burst": writes_in_burst,
        "alerts_inbox_dropped": int(counter_sum(after, "sentinel_vip_alerts_inbox_dropped") - dropped0),
        "p99_input_ms_is": "upper bound of the sentinel_vip_input_delay_seconds bucket holding the 99th percentile "
                           "(an event's arrival at its watcher -> the decision core handling it)",
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "load_average_is": "the machine's 1-minute load average before the burst and after the routes settled "
                           "(other processes included; the machine's core count is in the machine key)",
        "machine": "%d cores" % os.cpu_count(),
        "method": "in-rig run: the daemon binary against 3 real sentinels monitoring N masters and moto "
                  "(1 route table per master, reconcile every --interval); the burst is PUBLISHed on a plain redis-server "
                  "configured as a 4th sentinel endpoint (run does not check ROLE); --switch masters re-monitored "
                  "at a new address on every sentinel (in pipelines of 10 masters) just before the burst, and a "
                  "SIGHUP at its start starts a majority read, so reads and writes are in flight; "
                  "route_writes_during_burst counts the route writes that finished within the burst",
        "build_profile": args.profile,
        "interval": args.interval,
        "command": "bench/storm_bench.py --masters %d --switch %d --events %d --interval %s --bin %s --profile %r" % (
            n, args.switch, args.events, args.interval, args.bin, args.profile),
    }
    print(json.dumps(result, indent=2))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "storm.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    if not result["all_routes_right"] or result["lost_results"] or got < sent:
        sys.exit("storm: not every route right / results lost / events missing")


if __name__ == "__main__":
    main()
