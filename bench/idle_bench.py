#!/usr/bin/env python3
"""Idle footprint: the daemon with 3 sentinels and 1 master, left alone.
Reports RSS (median of samples every 5 s) and CPU share over a window after a
warm-up (default 60 s + 60 s).

Usage: bench/idle_bench.py [--settle 60] [--window 60] [--bin PATH] [--out DIR]"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from rig import ROOT, Rig  # noqa: E402  (the one rig: scripts/rig.py)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settle", type=float, default=60)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--every", type=float, default=5, help="RSS sample interval within the window, s")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "sentinel-vip"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sentinel-vip-idle.")
    rig = Rig(work, routes=True)
    try:
        cfg = rig.daemon_config("idle.yaml")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        p = rig.spawn([args.bin, "run", "--config", cfg], "sentinel-vip", env=env, log=os.path.join(work, "d.log"))
        time.sleep(args.settle)
        c0, t0 = cpu_seconds(p.pid), time.time()
        # RSS sampled every --every s over the window; the median is reported.
        samples = []
        while time.time() - t0 < args.window:
            samples.append((rss_mb(p.pid), rss_mb(p.pid, "RssAnon"), rss_mb(p.pid, "RssFile")))
            time.sleep(min(args.every, max(0.0, args.window - (time.time() - t0))))
        c1, t1 = cpu_seconds(p.pid), time.time()
        rss = statistics.median(x[0] for x in samples)
        anon = statistics.median(x[1] for x in samples)
        file_ = statistics.median(x[2] for x in samples)
        cpu = (c1 - c0) / (t1 - t0) * 100
    finally:
        rig.close()
        shutil.rmtree(work, ignore_errors=True)
    md = (f"| idle (3 sentinels, 1 master, reconcile 30s) | RSS MB (median of {len(samples)} samples) | of which anonymous | of which file-backed (binary text) | CPU % over {args.window:.0f} s |\n"
          f"|---|---|---|---|---|\n"
          f"| after {args.settle:.0f} s | {rss:.1f} | {anon:.1f} | {file_:.1f} | {cpu:.3f} |\n")
    print(md)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "idle.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "idle.json"), "w") as f:
        json.dump({"rss_mb": rss, "rss_samples_mb": [x[0] for x in samples], "bin": args.bin,
                   "bin_bytes": os.path.getsize(args.bin), "rss_anon_mb": anon, "rss_file_mb": file_, "cpu_percent": cpu, "settle_s": args.settle, "window_s": args.window}, f, indent=2)


if __name__ == "__main__":
    main()
