#!/usr/bin/env python3
"""Helpers for the demo and the benchmark: EC2 objects in moto, route reads,
and a webhook sink that prints what it receives. Runs with the .venv's python."""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3

VIP = "172.16.0.10/32"


def ec2(url):
    return boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def setup(url, tables, nodes):
    """Creates a VPC, route tables and one ENI per node; prints JSON."""
    c = ec2(url)
    vpc = c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = c.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    rtbs = [c.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(int(tables))]
    enis = [c.create_network_interface(SubnetId=subnet, PrivateIpAddress=f"10.0.1.{11 + i}")
            ["NetworkInterface"]["NetworkInterfaceId"] for i in range(int(nodes))]
    print(json.dumps({"vpc": vpc, "tables": rtbs, "enis": enis}))


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


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"setup": setup, "show": show, "wait": wait, "sink": sink}[cmd](*args)
