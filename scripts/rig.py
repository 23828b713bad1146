#!/usr/bin/env python3
"""The local rig of the demo, the benchmarks and the fixture recorder: a redis
master + replicas and sentinels on 127.0.0.2.., moto as EC2 (a VPC, route
tables, one ENI per node), and a sentinel-vip config for it.

This is the one Python set-up: scripts/demo.sh, bench/*.py and
tests/fixtures/record.py use it. The Rust tests' rig (tests/common) is its
twin: both fill in tests/common/sentinel.conf and tests/common/redis.conf the
same way, so the sentinels and redis-servers are configured alike.

As a module: `Rig(work, tables=2, ...)`, plus the helpers below.
As a command (with the .venv's python: boto3, redis):
  rig.py up WORK [--tables N] [--config-extra YAML]
        starts the rig in WORK, writes WORK/config.yaml (sentinel-vip's) and then
        WORK/rig.env (shell variables: MOTO_URL, REDIS_PORT, SENTINEL_PORT, HOSTS,
        TABLES, ENIS, REDIS_PIDS, CONFIG); keeps it up until SIGTERM or SIGINT
  rig.py failover SENTINEL_PORT
        waits until the sentinels can fail over, asks the first for it, and
        prints the new master's host once that sentinel names it
  rig.py show URL TABLE...               each table's VIP route
  rig.py wait URL ENI SECONDS TABLE...   until every table's VIP route points at ENI
  rig.py sink PORT FILE                  a webhook receiver that prints and records
"""
import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv", "bin")
VIP = "172.16.0.10/32"
MASTER = "mymaster"
HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
TEMPLATES = os.path.join(ROOT, "tests", "common")


def hosts(n):
    """`n` loopback hosts from 127.0.0.2 on (as tests/common `rig_hosts`)."""
    return [f"127.0.0.{2 + i}" for i in range(n)]


def free_port():
    # 0.0.0.0 so the port is free on every 127.0.0.x address.
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(host, port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {host}:{port}")


# --- what the rig writes: tests/common/{sentinel,redis}.conf, filled in as tests/common/redis.rs does ---

def fill(template, **values):
    """The template file's text with its `#` lines dropped and every {name} filled in."""
    with open(os.path.join(TEMPLATES, template)) as f:
        text = "".join(line + "\n" for line in f.read().splitlines() if not line.startswith("#"))
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def no_blank_lines(text):
    return "".join(line + "\n" for line in text.splitlines() if line.strip())


def sentinel_conf(i, bind, host, port, dir, monitor=None, extra=""):
    """Sentinel `i`'s config file; `monitor` = (host, port) of the master it
    watches as `mymaster`, None for nothing yet; `extra` = whole lines."""
    mh, mp = monitor or ("", 0)
    text = fill("sentinel.conf", bind=bind, port=port, dir=dir, i=i, extra=extra, host=host,
                master=MASTER, master_host=mh, master_port=mp)
    if monitor is None:
        text = text.split("sentinel monitor ")[0]
    return no_blank_lines(text)


def redis_args(bind, host, port, dir, replicaof=None):
    """redis-server's arguments: `redis.conf`'s lines as `--name value`, then
    `--replicaof` for a replica of `replicaof` = (host, port)."""
    args = []
    for line in fill("redis.conf", bind=bind, port=port, host=host, dir=dir).splitlines():
        if line.strip():
            name, _, value = line.partition(" ")
            args += ["--" + name, "" if value == '""' else value]
    if replicaof:
        args += ["--replicaof", replicaof[0], str(replicaof[1])]
    return args


def moto_server():
    """moto_server from $MOTO_SERVER, the .venv or PATH (as tests/common does)."""
    venv = os.path.join(VENV, "moto_server")
    found = os.environ.get("MOTO_SERVER") or (venv if os.path.isfile(venv) else shutil.which("moto_server"))
    if not found:
        sys.exit("moto_server not found (.venv/bin, PATH or $MOTO_SERVER): run scripts/setup.sh")
    return found


# --- what the sentinels say ---

def sentinel_clients(port, addrs=HOSTS):
    return [redis.Redis(host=h, port=port, decode_responses=True) for h in addrs]


def master_of(sentinels):
    """The master's host more than half of `sentinels` name, or None."""
    seen = []
    for s in sentinels:
        try:
            addr = s.sentinel_get_master_addr_by_name(MASTER)
        except redis.RedisError:
            addr = None
        if addr:
            seen.append(addr[0])
    best = max(set(seen), key=seen.count, default=None)
    return best if best and seen.count(best) * 2 > len(sentinels) else None


def ready_for_failover(sentinels, replicas=1, timeout=60):
    """Waits until every sentinel knows the others, none is failing over, and
    at least `replicas` replicas are linked to the master (Sentinel refuses a
    failover without a good replica)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            masters = [s.sentinel_master(MASTER) for s in sentinels]
            ok = all(m.get("num-other-sentinels", 0) >= len(sentinels) - 1
                     and "failover_in_progress" not in m.get("flags", "") for m in masters)
            good = [r for r in sentinels[0].sentinel_slaves(MASTER)
                    if r.get("master-link-status") == "ok" and "s_down" not in r.get("flags", "")
                    and "disconnected" not in r.get("flags", "")]
            if ok and len(good) >= replicas:
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    sys.exit("sentinels not ready for a failover")


def ask_failover(sentinel):
    """`SENTINEL FAILOVER` on `sentinel`, retried until it says OK."""
    while True:
        try:
            if sentinel.execute_command("SENTINEL", "FAILOVER", MASTER) in (b"OK", "OK", True):
                return
        except redis.ResponseError:
            pass
        time.sleep(0.1)


def failover(sentinels, timeout=60):
    """Waits until a failover can go, asks the first sentinel for it; returns
    the new master's host as soon as that sentinel, which carries the failover
    out, names it (at its +switch-master; the others learn it from its next
    hello, up to 2 s later)."""
    ready_for_failover(sentinels)
    before = master_of(sentinels)
    ask_failover(sentinels[0])
    end = time.time() + timeout
    while time.time() < end:
        now = master_of(sentinels[:1])
        if now and now != before:
            return now
        time.sleep(0.1)
    sys.exit(f"the sentinel did not name a new master within {timeout}s")


# --- EC2 in moto ---

def ec2(url):
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def routes(url, *tables):
    c = ec2(url)
    out = {}
    for t in c.describe_route_tables(RouteTableIds=list(tables))["RouteTables"]:
        r = [r for r in t["Routes"] if r.get("DestinationCidrBlock") == VIP]
        out[t["RouteTableId"]] = (r[0].get("NetworkInterfaceId") or r[0].get("InstanceId")) if r else None
    return out


def show(url, *tables):
    for t, target in routes(url, *tables).items():
        print(f"  {t}  {VIP} -> {target or '(no route)'}")


def wait(url, target, timeout, *tables):
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        if all(v == target for v in routes(url, *tables).values()):
            return
        time.sleep(0.05)
    sys.exit(f"route did not move to {target} within {timeout}s")


class Rig:
    """`nodes` redis-servers (node 0 the master, the others its replicas) and
    `sentinels` sentinels on 127.0.0.2.. (`monitor`: watching node 0 as
    mymaster; else nothing yet), each kind on one port; with `ec2`, moto with a
    VPC 10.0.0.0/16, a subnet 10.0.1.0/24, `tables` route tables (`routes`: a
    VIP route to node 0's ENI in each) and one ENI per node holding 10.0.1.11,
    .12, ... Files and logs go to `work`. `close()` (or `with`) stops it all."""

    def __init__(self, work, tables=2, nodes=3, sentinels=3, monitor=True, ec2=True, routes=False):
        self.work = work
        self.procs = []
        self.servers = []
        self.hosts = hosts(max(nodes, sentinels))
        self.rp = free_port()
        self.sp = free_port()
        self.moto = free_port() if ec2 else None
        self.tables, self.enis, self.eni_of = [], [], {}
        try:
            self._start(tables, nodes, sentinels, monitor, routes)
        except BaseException:
            self.close()
            raise

    def _start(self, tables, nodes, sentinels, monitor, routes):
        if self.moto:
            self.spawn([moto_server(), "-H", "127.0.0.1", "-p", str(self.moto)], "moto")
        for i in range(nodes):
            d = os.path.join(self.work, f"redis-{i}")
            os.makedirs(d, exist_ok=True)
            h = self.hosts[i]
            master = (self.hosts[0], self.rp) if i else None
            self.servers.append(self.spawn(["redis-server"] + redis_args(h, h, self.rp, d, master), f"redis-{i}"))
        for h in self.hosts[:nodes]:
            wait_port(h, self.rp)
        for i, h in enumerate(self.hosts[:sentinels]):
            conf = os.path.join(self.work, f"sentinel-{i}.conf")
            with open(conf, "w") as f:
                f.write(sentinel_conf(i, h, h, self.sp, self.work, (self.hosts[0], self.rp) if monitor else None))
            self.spawn(["redis-server", conf, "--sentinel"], f"sentinel-{i}")
        for h in self.hosts[:sentinels]:
            wait_port(h, self.sp)
        self.sentinels = sentinel_clients(self.sp, self.hosts[:sentinels])
        if not self.moto:
            return
        wait_port("127.0.0.1", self.moto)
        self.ec2 = ec2(self.endpoint)
        self.vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = self.ec2.create_subnet(VpcId=self.vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.tables = [self.ec2.create_route_table(VpcId=self.vpc)["RouteTable"]["RouteTableId"]
                       for _ in range(tables)]
        self.enis = [self.ec2.create_network_interface(SubnetId=self.subnet, PrivateIpAddress=f"10.0.1.{11 + i}")
                     ["NetworkInterface"]["NetworkInterfaceId"] for i in range(nodes)]
        if routes:
            for t in self.tables:
                self.ec2.create_route(RouteTableId=t, DestinationCidrBlock=VIP, NetworkInterfaceId=self.enis[0])
        self.eni_of = dict(zip(self.hosts, self.enis))

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.moto}"

    def spawn(self, argv, name, env=None, log=None):
        """Starts `argv` (output to `log`, else discarded); stopped by close()."""
        out = open(log, "a") if log else subprocess.DEVNULL
        p = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
        self.procs.append(p)
        return p

    def master(self):
        return master_of(self.sentinels)

    def ready_for_failover(self, replicas=1):
        ready_for_failover(self.sentinels, replicas)

    def ask_failover(self):
        ask_failover(self.sentinels[0])

    def failover(self):
        return failover(self.sentinels)

    def daemon_config(self, name, endpoint=None, interval="30s", http=True, extra=""):
        """Writes a sentinel-vip config for this rig into the work dir; returns its path."""
        endpoint = endpoint or self.endpoint
        path = os.path.join(self.work, name)
        sentinels = ", ".join(f'"{h}:{self.sp}"' for h in self.hosts[:len(self.sentinels)])
        nodes = "".join(f'      "{h}:{self.rp}": {{ network_interface_id: {e} }}\n' for h, e in self.eni_of.items())
        listen = f"http:\n  listen: 127.0.0.1:{free_port()}\n" if http else ""
        with open(path, "w") as f:
            f.write(f"sentinels: [{sentinels}]\n"
                    f"aws:\n  region: us-east-1\n  endpoint_url: {endpoint}\nmasters:\n  {MASTER}:\n"
                    f"    vip: {VIP}\n    route_tables: [{', '.join(self.tables)}]\n    nodes:\n{nodes}"
                    f"reconcile:\n  interval: {interval}\n{listen}{extra}")
        return path

    def close(self):
        for p in reversed(self.procs):
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the daemon ---

def daemon_status(http):
    """sentinel-vip's /status on 127.0.0.1:`http` (`http.listen`)."""
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/status", timeout=5).read())


def wait_daemon_settled(http, log, timeout=120):
    """Waits until the daemon has reconciled twice and applied every master;
    returns its /status. Its `log` is shown if it never does."""
    end = time.time() + timeout
    while True:
        try:
            st = daemon_status(http)
            if st["reconciles"] >= 2 and all(m["applied"] for m in st["masters"]):
                return st
        except OSError:
            pass
        if time.time() > end:
            sys.exit("daemon never settled:\n" + open(log).read()[-3000:])
        time.sleep(0.2)


# --- a webhook sink ---

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            doc = json.loads(body)
            text = doc.get("text") or doc.get("commonAnnotations", {}).get("summary") or body.decode()
        except Exception:
            text = body.decode(errors="replace")
        print(f"[webhook {self.path}] {text}", flush=True)
        with open(self.server.record, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body.decode(errors="replace")}) + "\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def sink(port, record):
    srv = HTTPServer(("127.0.0.1", int(port)), Sink)
    srv.record = record
    srv.serve_forever()


# --- the command ---

def up(work, tables, config_extra):
    def stop(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Rig(work, tables=tables) as rig:
        config = rig.daemon_config("config.yaml", http=False, extra=config_extra)
        arr = lambda xs: "(" + " ".join(shlex.quote(x) for x in xs) + ")"
        env = (f"MOTO_URL={shlex.quote(rig.endpoint)}\nREDIS_PORT={rig.rp}\nSENTINEL_PORT={rig.sp}\n"
               f"HOSTS={arr(rig.hosts)}\nTABLES={arr(rig.tables)}\nENIS={arr(rig.enis)}\n"
               f"REDIS_PIDS={arr(str(p.pid) for p in rig.servers)}\nCONFIG={shlex.quote(config)}\n")
        # Written whole, then renamed: a reader never sees half of it.
        with open(os.path.join(work, "rig.env.tmp"), "w") as f:
            f.write(env)
        os.rename(os.path.join(work, "rig.env.tmp"), os.path.join(work, "rig.env"))
        while True:
            signal.pause()


def main():
    ap = argparse.ArgumentParser(description="The local rig (see the module's doc).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("work")
    p.add_argument("--tables", type=int, default=2)
    p.add_argument("--config-extra", default="", help="appended to sentinel-vip's config")
    p = sub.add_parser("failover")
    p.add_argument("sentinel_port", type=int)
    p = sub.add_parser("show")
    p.add_argument("url")
    p.add_argument("tables", nargs="+")
    p = sub.add_parser("wait")
    p.add_argument("url")
    p.add_argument("eni")
    p.add_argument("timeout")
    p.add_argument("tables", nargs="+")
    p = sub.add_parser("sink")
    p.add_argument("port")
    p.add_argument("record")
    a = ap.parse_args()
    if a.cmd == "up":
        up(a.work, a.tables, a.config_extra)
    elif a.cmd == "failover":
        print(failover(sentinel_clients(a.sentinel_port)))
    elif a.cmd == "show":
        show(a.url, *a.tables)
    elif a.cmd == "wait":
        wait(a.url, a.eni, a.timeout, *a.tables)
    elif a.cmd == "sink":
        sink(a.port, a.record)


if __name__ == "__main__":
    main()
