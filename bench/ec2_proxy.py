#!/usr/bin/env python3
"""An HTTP proxy in front of moto that behaves more like a regional EC2 endpoint.

- `--delay-ms D`: every request waits D ms before it is forwarded (the network
  and service latency of a real endpoint). Connections are independent, so
  requests on different connections wait concurrently, as a regional endpoint
  serves them; moto behind it still handles one request at a time.
- `--write-rate R --write-burst B`: an account-wide token bucket for mutating
  calls (ReplaceRoute, CreateRoute): beyond it the proxy answers 503
  `RequestLimitExceeded` itself, as EC2 does, without forwarding.
- `GET /__stats` answers JSON counters (requests per action, throttled answers,
  time of the last write forwarded).

Usage: bench/ec2_proxy.py --upstream 127.0.0.1:5000 --port 0 [--delay-ms 50]
       [--write-rate 20 --write-burst 20]; prints `listening <port>` when ready.
"""
import argparse
import asyncio
import json
import re
import time
import urllib.parse

MUTATING = {"ReplaceRoute", "CreateRoute"}
THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded'
             b'</Code><Message>Request limit exceeded.</Message></Error></Errors>'
             b'<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>')


class Bucket:
    def __init__(self, rate, burst):
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


async def read_message(reader):
    """One HTTP/1.1 message: (head bytes, headers dict, body bytes); None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += chunk[:-2]
            if size == 0:  # no trailers: the last chunk's CRLF ends the body
                break
        # re-emit with a length instead of chunks
        head = re.sub(rb"(?im)^transfer-encoding:.*\r\n", b"", head)
        head = head[:-2] + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        return head, headers, body
    n = int(headers.get(b"content-length", b"0"))
    body = await reader.readexactly(n) if n else b""
    return head, headers, body


class Proxy:
    def __init__(self, args):
        self.args = args
        self.host, self.port = args.upstream.rsplit(":", 1)
        self.bucket = Bucket(args.write_rate, args.write_burst) if args.write_rate else None
        self.stats = {"requests": {}, "throttled": 0, "last_write_forwarded": None, "first_write_seen": None}

    async def handle(self, reader, writer):
        up_r = up_w = None
        try:
            while True:
                msg = await read_message(reader)
                if msg is None:
                    break
                head, headers, body = msg
                if head.startswith(b"GET /__stats"):
                    out = json.dumps(self.stats).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                 + str(len(out)).encode() + b"\r\n\r\n" + out)
                    await writer.drain()
                    continue
                action = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
                self.stats["requests"][action] = self.stats["requests"].get(action, 0) + 1
                if self.args.delay_ms:
                    await asyncio.sleep(self.args.delay_ms / 1e3)
                if action in MUTATING:
                    if self.stats["first_write_seen"] is None:
                        self.stats["first_write_seen"] = time.time()
                    if self.bucket and not self.bucket.take():
                        self.stats["throttled"] += 1
                        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/xml\r\nContent-Length: "
                                     + str(len(THROTTLED)).encode() + b"\r\n\r\n" + THROTTLED)
                        await writer.drain()
                        continue
                    self.stats["last_write_forwarded"] = time.time()
                if up_w is None:
                    up_r, up_w = await asyncio.open_connection(self.host, int(self.port))
                up_w.write(head + body)
                await up_w.drain()
                resp = await read_message(up_r)
                if resp is None:
                    break
                rhead, rheaders, rbody = resp
                writer.write(rhead + rbody)
                await writer.drain()
                if rheaders.get(b"connection", b"").lower() == b"close":
                    up_w.close()
                    up_r = up_w = None
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if up_w is not None:
                up_w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--write-rate", type=float, default=0.0)
    ap.add_argument("--write-burst", type=int, default=20)
    args = ap.parse_args()
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
