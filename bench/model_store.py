#!/usr/bin/env python3
"""Benchmark: model manifest verification throughput (GB/s) vs total size and hashing threads, and
stage-in time vs file size from a folder, an HTTP mirror and S3 (moto) -- all in one run, so the
ratios are comparable.

Verification runs ``model_manifest.verify`` (the nodes' ``model-verify``) over trees of real
safetensors shards (hard links into one set of shards, so the largest size is written once), each
size and thread count twice: *warm* (the files in the page cache: the hashing ceiling) and *cold*
(each file dropped from the page cache with ``posix_fadvise(DONTNEED)`` first: disk + hashing;
no root needed, nothing else's cache touched). The single-thread sha256 speed of this CPU over a
buffer in memory is reported as the per-thread ceiling.

Stage-in runs ``llmcluster.modelstore.stage`` (fetch with size+sha256 check, atomic rename, then
the full verification) for a one-file model of each size from a folder, from ``http.server`` on
127.0.0.1 and from a moto S3 server on 127.0.0.1; the ratio column is each source's time over the
folder's.

    python bench/model_store.py [--sizes 256M,1G,2G] [--workers 1,2,4] [--shard 128M]
                                [--stage-sizes 16M,64M,256M] [--repeat 1] [--workdir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    model_manifest as MM,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}.get(text[-1:], 1)
    return int(float(text.rstrip("KMGT")) * mult)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return str(n)


def write_shard(path: Path, size: int, block: bytes) -> None:
    """A real safetensors file of exactly ``size`` bytes: one F8_E4M3 tensor filling the data section."""
    for header_len in range(64, 256, 8):
        data = size - 8 - header_len
        header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [data], "data_offsets": [0, data]}}).encode()
        if len(header) <= header_len:
            break
    header += b" " * (header_len - len(header))
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", header_len) + header)
        left = data
        salt = hashlib.sha256(path.name.encode()).digest()  # every shard's bytes differ
        while left:
            chunk = block[: min(len(block), left)]
            if left == data and len(chunk) > len(salt):
                chunk = salt + chunk[len(salt):]
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())


def drop_cache(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def cpu_seconds() -> float:
    """CPU time of this process (all threads, user + system)."""
    t = os.times()
    return t.user + t.system


def sha256_ceiling(seconds: float = 1.0) -> tuple[float, float]:
    """(GB per wall second, GB per CPU second) of one thread hashing a buffer in memory."""
    buf = os.urandom(8 * MiB)
    h = hashlib.sha256()
    n, t0, c0 = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - t0 < seconds:
        h.update(buf)
        n += len(buf)
    return n / 1e9 / (time.perf_counter() - t0), n / 1e9 / max(cpu_seconds() - c0, 1e-9)


# --------------------------------------------------------------------------- verification


def bench_verify(work: Path, sizes: list[int], workers: list[int], shard: int, repeat: int) -> list[dict]:
    shards_dir = work / "shards"
    shards_dir.mkdir()
    count = max(1, -(-max(sizes) // shard))
    block = os.urandom(16 * MiB)
    t0 = time.perf_counter()
    names = []
    for i in range(count):
        name = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        write_shard(shards_dir / name, shard, block)
        names.append(name)
    print(f"wrote {count} shard(s) of {human(shard)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = []
    for size in sizes:
        k = max(1, size // shard)
        tree = work / f"tree-{size}"
        tree.mkdir()
        for name in names[:k]:
            os.link(shards_dir / name, tree / name)
        t0 = time.perf_counter()
        manifest = MM.build_manifest(str(tree), max(workers))
        build_s = time.perf_counter() - t0
        for cache in ("cold", "warm"):
            for w in workers:
                runs, cpus = [], []
                for _ in range(repeat):
                    if cache == "cold":
                        drop_cache(tree)
                    else:
                        MM.verify(str(tree), manifest, w)  # fill the cache
                    c0 = cpu_seconds()
                    report = MM.verify(str(tree), manifest, w)
                    cpus.append(cpu_seconds() - c0)
                    assert report.ok, report.lines()
                    runs.append(report.seconds)
                s, c = statistics.median(runs), statistics.median(cpus)
                rows.append({"cache": cache, "total_bytes": manifest.total_bytes, "files": k, "workers": w,
                             "seconds": round(s, 4), "gbps": round(manifest.total_bytes / 1e9 / s, 3),
                             "cpu_s": round(c, 3), "gb_per_cpu_s": round(manifest.total_bytes / 1e9 / max(c, 1e-9), 3),
                             "manifest_build_s": round(build_s, 3)})
        shutil.rmtree(tree)
    for r in rows:
        base = next(b for b in rows if b["cache"] == r["cache"] and b["total_bytes"] == r["total_bytes"]
                    and b["workers"] == workers[0])
        r["vs_1_worker"] = round(r["gbps"] / base["gbps"], 2)
    shutil.rmtree(shards_dir)
    return rows


# --------------------------------------------------------------------------- stage-in


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def bench_stage(work: Path, sizes: list[int], repeat: int, workers: int) -> list[dict]:
    from llmcluster import modelstore as MS

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ.pop(var, None)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    for var, val in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                     ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(var, val)
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    www = work / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    block = os.urandom(16 * MiB)
    rows = []
    try:
        for size in sizes:
            src = www / f"m{size}"
            src.mkdir()
            write_shard(src / "model-00001-of-00001.safetensors", size, block)
            manifest = MM.build_manifest(str(src))
            s3.upload_file(str(src / "model-00001-of-00001.safetensors"), "bench",
                           f"m{size}/model-00001-of-00001.safetensors")
            sources = {"dir": str(src), "http": f"http://127.0.0.1:{server.server_address[1]}/m{size}",
                       "s3": f"s3://bench/m{size}"}
            for kind, text in sources.items():
                runs, fetch = [], []
                for i in range(repeat):
                    dest = work / f"dest-{kind}-{size}-{i}"
                    source = MS.open_source(text, s3_endpoint_url=endpoint)
                    t0 = time.perf_counter()
                    report = MS.stage(manifest, source, dest, workers=workers)
                    runs.append(time.perf_counter() - t0)
                    fetch.append(report.fetch_seconds)
                    shutil.rmtree(dest)
                s, f = statistics.median(runs), statistics.median(fetch)
                rows.append({"source": kind, "bytes": size, "stage_s": round(s, 4), "fetch_s": round(f, 4),
                             "fetch_mbps": round(size / 1e6 / f, 1), "stage_mbps": round(size / 1e6 / s, 1)})
            shutil.rmtree(src)
    finally:
        server.shutdown()
        server.server_close()
        moto.stop()
    for r in rows:
        base = next(b for b in rows if b["bytes"] == r["bytes"] and b["source"] == "dir")
        r["vs_dir"] = round(r["stage_s"] / base["stage_s"], 2)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256M,1G,2G", help="verification tree sizes")
    ap.add_argument("--workers", default="1,2,4", help="hashing threads to compare")
    ap.add_argument("--shard", default="128M", help="shard size of the verification trees")
    ap.add_argument("--stage-sizes", default="16M,64M,256M", help="file sizes for stage-in")
    ap.add_argument("--stage-workers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (the median is reported)")
    ap.add_argument("--no-stage", action="store_true", help="verification only (needs neither boto3 nor moto)")
    ap.add_argument("--workdir", help="where to write the trees (default: a temporary folder; removed after)")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    stage_sizes = [parse_size(s) for s in args.stage_sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="llmcluster-bench-model-", dir=args.workdir))
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    try:
        ceiling = sha256_ceiling()
        verify_rows = bench_verify(work, sizes, workers, parse_size(args.shard), args.repeat)
        stage_rows = [] if args.no_stage else bench_stage(work, stage_sizes, args.repeat, args.stage_workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    env = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
           "sha256_1_thread_gbps": round(ceiling[0], 3), "sha256_1_thread_gb_per_cpu_s": round(ceiling[1], 3),
           "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
           "seconds": round(time.perf_counter() - t_start, 1)}
    print(f"\nsha256 over memory, one thread: {ceiling[0]:.2f} GB/s wall, {ceiling[1]:.2f} GB per CPU second; "
          f"{env['cpus']} CPU(s); load average {load0:.1f} at the start, {env['loadavg_end']:.1f} at the end\n")
    print(f"{'cache':>5} {'size':>9} {'files':>5} {'workers':>7} {'seconds':>8} {'GB/s':>6} {'vs 1 worker':>11} "
          f"{'CPU s':>6} {'GB/CPU s':>8}")
    for r in verify_rows:
        print(f"{r['cache']:>5} {human(r['total_bytes']):>9} {r['files']:>5} {r['workers']:>7} {r['seconds']:>8.3f} "
              f"{r['gbps']:>6.2f} {r['vs_1_worker']:>11.2f} {r['cpu_s']:>6.2f} {r['gb_per_cpu_s']:>8.2f}")
    if stage_rows:
        print(f"\n{'source':>6} {'size':>9} {'stage s':>8} {'fetch s':>8} {'fetch MB/s':>10} {'stage MB/s':>10} "
              f"{'vs dir':>6}")
        for r in stage_rows:
            print(f"{r['source']:>6} {human(r['bytes']):>9} {r['stage_s']:>8.3f} {r['fetch_s']:>8.3f} "
                  f"{r['fetch_mbps']:>10.1f} {r['stage_mbps']:>10.1f} {r['vs_dir']:>6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"environment": env, "verify": verify_rows, "stage": stage_rows},
                                             indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
