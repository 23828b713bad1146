#!/usr/bin/env python3
"""A plain in-process peer: what a user writes in an afternoon instead of
sentinel-vip. redis-py subscribes to +switch-master on every sentinel; boto3
(client created and warmed at start) writes the tables one after the other."""
import sys
import threading

import boto3
import redis

endpoint, tables, nodes_map, sentinels = sys.argv[1], sys.argv[2].split(","), sys.argv[3], sys.argv[4].split(",")
eni_of = dict(line.split() for line in open(nodes_map) if line.strip())
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
ec2.describe_route_tables(RouteTableIds=tables)  # warm
lock = threading.Lock()
current = [None]


def watch(addr):
    host, port = addr.rsplit(":", 1)
    p = redis.Redis(host=host, port=int(port)).pubsub()
    p.subscribe("+switch-master")
    for m in p.listen():
        if m["type"] != "message":
            continue
        name, _, _, new_ip, _ = m["data"].decode().split()
        with lock:
            if current[0] == new_ip:
                continue
            current[0] = new_ip
            for t in tables:
                ec2.replace_route(RouteTableId=t, DestinationCidrBlock="172.16.0.10/32",
                                  NetworkInterfaceId=eni_of[new_ip])


threads = [threading.Thread(target=watch, args=(s,), daemon=True) for s in sentinels]
for t in threads:
    t.start()
print("peer ready", flush=True)
for t in threads:
    t.join()
