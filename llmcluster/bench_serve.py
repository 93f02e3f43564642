"""``llmcluster bench serve``: a load test of the OpenAI-compatible API (through the gateway, mTLS).

Drives ``POST /v1/chat/completions`` with ``stream: true`` and measures, per request, the time to
the first content token (TTFT), the time per output token after it (TPOT), the end-to-end latency
and the output tokens; then p50/p90/p99 of each, output tokens/s, requests/s and the errors, and
the ratio of the measured decode rate to the planner's roofline bound
(:attr:`llmcluster.plan.capacity.CapacityPlan.decode_tokens_per_s_bound`, an upper bound no real
deployment reaches: the ratio says how far below it the cluster runs).

Two load modes:

* **closed loop** (``--concurrency N``): N workers, each sending its next request when the last
  one ends (what a fixed number of users does);
* **fixed rate** (``--rate R``): requests start at R per second (``--arrival poisson`` or
  ``constant``) whatever the server does, at most ``--max-in-flight`` at once (an open loop: it
  shows the latency a given offered load gets, and the queueing once it is too high).

Input and output lengths are drawn per request from ``--isl``/``--osl`` distributions
(``N``, ``uniform:A:B``, ``normal:MEAN:SD``), from a seeded generator so that two runs send the
same requests. Prompts are synthetic words (about one token each); the output length is asked for
with ``max_tokens`` (and ``ignore_eos`` with ``--ignore-eos``, an extension trtllm-serve honours).

The endpoint: ``--url`` (any OpenAI-compatible base URL, ``http`` or ``https``), or ``--stack S``:
the stack's gateway (``https://<gateway hostname>:<port>``, connected at ``--connect`` or the
gateway's VIP or first host, with SNI and ``Host`` the gateway's hostname). The client identity:
``--cert``/``--key`` and ``--cacert``, or ``--pki-dir`` (a ``llmcluster pki export`` folder:
``certs/<client>.pem``, ``private/<client>.key``, ``root-ca.pem``; ``--client`` defaults to
``admin``). Standard library only; one thread per in-flight request (enough for the few hundred
requests/s one load generator sends).
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmcluster.errors import LLMClusterError

#: Word list of the synthetic prompts (short English words: about one token each in BPE vocabularies).
_WORDS = ("time year people way day man thing woman life child world school state family student group "
          "country problem hand part place case week company system program question work government "
          "number night point home water room mother area money story fact month lot right study book "
          "eye job word business issue side kind head house service friend father power hour game line").split()


class BenchError(LLMClusterError):
    """A bad bench option (one line, key path first)."""


# --------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class Dist:
    """A token-length distribution: ``fixed``, ``uniform`` (inclusive) or ``normal`` (clipped to >= 1)."""

    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str, what: str) -> Dist:
        t = text.strip().lower()
        try:
            if re.fullmatch(r"\d+", t):
                return cls._checked("fixed", int(t), 0, what, text)
            kind, _, rest = t.partition(":")
            parts = [float(x) for x in rest.split(":")] if rest else []
            if kind == "uniform" and len(parts) == 2:
                return cls._checked("uniform", parts[0], parts[1], what, text)
            if kind == "normal" and len(parts) == 2:
                return cls._checked("normal", parts[0], parts[1], what, text)
        except ValueError:
            pass
        raise BenchError(f"{what}: {text[:40]!r} is not a length distribution (N, uniform:A:B or normal:MEAN:SD)")

    @classmethod
    def _checked(cls, kind: str, a: float, b: float, what: str, text: str) -> Dist:
        if not all(math.isfinite(x) for x in (a, b)) or a < 1 or a > 1_048_576 or b < 0 or b > 1_048_576:
            raise BenchError(f"{what}: {text[:40]!r} is out of range (lengths 1..1048576, SD >= 0)")
        if kind == "uniform" and b < a:
            raise BenchError(f"{what}: {text[:40]!r}: the upper bound is below the lower")
        return cls(kind, a, b)

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return int(self.a)
        if self.kind == "uniform":
            return rng.randint(int(self.a), int(self.b))
        return max(1, round(rng.gauss(self.a, self.b)))

    @property
    def mean(self) -> float:
        return {"fixed": self.a, "uniform": (self.a + self.b) / 2}.get(self.kind, self.a)

    def __str__(self) -> str:
        return {"fixed": f"{int(self.a)}", "uniform": f"uniform:{int(self.a)}:{int(self.b)}"}.get(
            self.kind, f"normal:{self.a:g}:{self.b:g}")


def prompt_of(n_tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, n_tokens)))


# --------------------------------------------------------------------------- endpoint


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: ``scheme://host:port`` (connected at ``address``), TLS material, model."""

    scheme: str
    host: str
    port: int
    address: str
    base_path: str = ""
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        ctx = ssl.create_default_context(cafile=self.cacert)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.base_path}"


def endpoint_from_url(url: str, *, connect: str | None = None, cacert: str | None = None,
                      cert: str | None = None, key: str | None = None, insecure: bool = False) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchError(f"--url: {url[:80]!r} is not an http(s):// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise BenchError(f"--url: {url[:80]!r}: {exc}") from None
    for opt, path in (("--cacert", cacert), ("--cert", cert), ("--key", key)):
        if path is not None and not Path(path).is_file():
            raise BenchError(f"{opt}: {path}: no such file")
    if (cert is None) != (key is None):
        raise BenchError("--cert: a client certificate needs its key (--cert and --key together)")
    base = parts.path.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return Endpoint(parts.scheme, parts.hostname, port, connect or parts.hostname, base, cacert, cert, key, insecure)


def client_material(pki_dir: str, client: str, option: str = "--pki-dir") -> tuple[str, str, str]:
    """(cacert, cert, key) of ``client`` in a ``llmcluster pki export`` folder (``option``: the
    command-line option that named the folder, for the error)."""
    d = Path(pki_dir)
    if not d.is_dir():
        raise BenchError(f"{option}: {pki_dir}: no such folder (run `llmcluster pki export`)")
    cacert, cert, key = d / "root-ca.pem", d / "certs" / f"{client}.pem", d / "private" / f"{client}.key"
    for path in (cacert, cert, key):
        if not path.is_file():
            raise BenchError(f"{option}: {path} is missing (is {client!r} a client of this PKI? see --client)")
    return str(cacert), str(cert), str(key)


# --------------------------------------------------------------------------- one request


@dataclass
class Result:
    ok: bool
    start: float
    isl: int
    osl_asked: int
    status: int = 0
    error: str = ""
    ttft_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    prompt_tokens: int | None = None

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class _Conn(threading.local):
    conn: http.client.HTTPConnection | None = None


def _connect(ep: Endpoint, ctx: ssl.SSLContext | None, timeout: float) -> http.client.HTTPConnection:
    if ctx is None:
        conn = http.client.HTTPConnection(ep.address, ep.port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(ep.address, ep.port, timeout=timeout, context=ctx)
        if ep.address != ep.host:
            # connect to the address, verify and send SNI for the hostname
            def _connect_sni(c=conn) -> None:
                sock = socket.create_connection((ep.address, ep.port), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.sock = ctx.wrap_socket(sock, server_hostname=ep.host)
            conn.connect = _connect_sni  # type: ignore[method-assign]
    return conn


def one_request(ep: Endpoint, ctx: ssl.SSLContext | None, local: _Conn, model: str, isl: int, osl: int,
                rng_seed: int, timeout: float, reuse: bool, ignore_eos: bool, clock: Callable[[], float]) -> Result:
    rng = random.Random(rng_seed)
    body = {"model": model, "messages": [{"role": "user", "content": prompt_of(isl, rng)}], "max_tokens": osl,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
    if ignore_eos:
        body["ignore_eos"] = True
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Host": ep.host if ep.port in (80, 443) else f"{ep.host}:{ep.port}",
               "Accept": "text/event-stream"}
    if not reuse:
        headers["Connection"] = "close"
    start = clock()
    res = Result(ok=False, start=start, isl=isl, osl_asked=osl)
    conn = local.conn if reuse else None
    try:
        if conn is None:
            conn = _connect(ep, ctx, timeout)
            if reuse:
                local.conn = conn
        conn.request("POST", f"{ep.base_path}/v1/chat/completions", body=data, headers=headers)
        resp = conn.getresponse()
        res.status = resp.status
        if resp.status != 200:
            detail = resp.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
            res.error = f"HTTP {resp.status}: {detail[:120]}"
            _drop(local, conn, reuse, resp)
            return res
        chunks = 0
        stream = SseStream(resp)
        for _text in stream:
            if res.ttft_s is None:
                res.ttft_s = clock() - start
            chunks += 1
        usage, done = stream.usage, stream.done
        res.e2e_s = clock() - start
        resp.read()
        if not done:
            res.error = "stream ended without [DONE]"
            _drop(local, conn, reuse, resp)
            return res
        res.output_tokens = int(usage["completion_tokens"]) if usage and "completion_tokens" in usage else chunks
        res.prompt_tokens = int(usage["prompt_tokens"]) if usage and "prompt_tokens" in usage else None
        res.ok = res.ttft_s is not None
        if not res.ok:
            res.error = "no content token"
        if not reuse or resp.will_close:
            _drop(local, conn, reuse, resp)
        return res
    except (OSError, http.client.HTTPException, ValueError) as exc:
        res.error = f"{exc.__class__.__name__}: {str(exc)[:160]}"
        res.e2e_s = clock() - start
        _drop(local, conn, reuse, None)
        return res


class SseStream:
    """The content pieces of an OpenAI streaming response (``text/event-stream``), in order; after
    the iteration ``done`` says whether ``[DONE]`` came and ``usage`` holds the last usage seen."""

    def __init__(self, resp: Any):
        self.resp = resp
        self.done = False
        self.usage: dict[str, Any] | None = None

    def __iter__(self):
        while True:
            line = self.resp.readline()
            if not line:
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                return
            event = json.loads(payload)
            if event.get("usage"):
                self.usage = event["usage"]
            for choice in event.get("choices") or ():
                text = (choice.get("delta") or {}).get("content") or (choice.get("text") or "")
                if text:
                    yield text


def _drop(local: _Conn, conn: http.client.HTTPConnection | None, reuse: bool, resp: Any) -> None:
    if conn is not None:
        conn.close()
    if reuse:
        local.conn = None


# --------------------------------------------------------------------------- the run


@dataclass
class Config:
    model: str
    isl: Dist
    osl: Dist
    mode: str  # "closed" | "rate"
    concurrency: int = 8
    rate: float = 0.0
    arrival: str = "poisson"
    max_in_flight: int = 256
    requests: int = 100
    duration_s: float | None = None
    warmup: int = 0
    seed: int = 0
    timeout_s: float = 600.0
    reuse: bool = True
    ignore_eos: bool = False


@dataclass
class Report:
    endpoint: str
    config: dict[str, Any]
    wall_s: float
    results: list[Result] = field(default_factory=list)
    roofline: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.results if r.ok]
        errors = Counter(r.error.split(":")[0] if r.error else "failed" for r in self.results if not r.ok)
        out_tokens = sum(r.output_tokens for r in ok)
        wall = max(self.wall_s, 1e-9)
        s: dict[str, Any] = {
            "requests": len(self.results), "ok": len(ok), "errors": sum(errors.values()),
            "error_kinds": dict(errors), "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(len(ok) / wall, 3), "output_tokens": out_tokens,
            "output_tokens_per_s": round(out_tokens / wall, 2),
            "input_tokens_mean": round(sum(r.isl for r in ok) / len(ok), 1) if ok else None,
            "output_tokens_mean": round(out_tokens / len(ok), 1) if ok else None,
        }
        for name, values in (("ttft_s", [r.ttft_s for r in ok]), ("tpot_s", [r.tpot_s for r in ok]),
                             ("e2e_s", [r.e2e_s for r in ok])):
            vals = sorted(v for v in values if v is not None)
            s[name] = {f"p{q}": round(percentile(vals, q), 6) if vals else None for q in (50, 90, 99)}
            s[name]["mean"] = round(sum(vals) / len(vals), 6) if vals else None
        if self.roofline is not None:
            r = dict(self.roofline)
            bound = r.get("decode_tokens_per_s_bound")
            r["ratio_output_tokens_per_s"] = round(s["output_tokens_per_s"] / bound, 4) if bound else None
            per_user = r.get("decode_tokens_per_s_per_user_bound")
            tpot = s["tpot_s"]["p50"]
            r["ratio_per_user_decode"] = round((1 / tpot) / per_user, 4) if per_user and tpot else None
            s["roofline"] = r
        return s

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "config": self.config, "summary": self.summary(),
                "requests": [{**asdict(r), "tpot_s": r.tpot_s} for r in self.results]}


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an ascending list."""
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def run(ep: Endpoint, cfg: Config, *, roofline: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None) -> Report:
    """Run the load test and return its report (never raises for a failed request: it is counted)."""
    ctx = ep.ssl_context()
    clock = time.perf_counter
    rng = random.Random(cfg.seed)
    total = cfg.requests
    plan = [(cfg.isl.sample(rng), cfg.osl.sample(rng), rng.randrange(2**31)) for _ in range(total + cfg.warmup)]
    results: list[Result] = []
    lock = threading.Lock()
    local = _Conn()

    for isl, osl, seed in plan[:cfg.warmup]:  # warm-up: connections, CUDA graphs, caches (not counted)
        one_request(ep, ctx, local, cfg.model, isl, osl, seed, cfg.timeout_s, cfg.reuse, cfg.ignore_eos, clock)
    if local.conn is not None:
        local.conn.close()
    work = plan[cfg.warmup:]
    t0 = clock()
    deadline = t0 + cfg.duration_s if cfg.duration_s else None

    def record(r: Result) -> None:
        with lock:
            results.append(r)
            if progress:
                progress(len(results))

    if cfg.mode == "closed":
        nxt = iter(range(len(work)))
        nxt_lock = threading.Lock()

        def worker() -> None:
            wl = _Conn()
            while True:
                if deadline is not None and clock() >= deadline:
                    break
                with nxt_lock:
                    i = next(nxt, None)
                if i is None:
                    break
                isl, osl, seed = work[i]
                record(one_request(ep, ctx, wl, cfg.model, isl, osl, seed, cfg.timeout_s, cfg.reuse,
                                   cfg.ignore_eos, clock))
            if wl.conn is not None:
                wl.conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(cfg.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        pool: list[http.client.HTTPConnection] = []  # idle keep-alive connections of this run
        pool_lock = threading.Lock()
        sem = threading.BoundedSemaphore(cfg.max_in_flight)
        threads = []
        arrival_rng = random.Random(cfg.seed + 1)
        at = t0
        for isl, osl, seed in work:
            gap = arrival_rng.expovariate(cfg.rate) if cfg.arrival == "poisson" else 1.0 / cfg.rate
            at += gap
            if deadline is not None and at >= deadline:
                break
            delay = at - clock()
            if delay > 0:
                time.sleep(delay)
            if not sem.acquire(blocking=False):
                record(Result(ok=False, start=clock(), isl=isl, osl_asked=osl,
                              error=f"client: over --max-in-flight {cfg.max_in_flight}"))
                continue

            def fire(isl=isl, osl=osl, seed=seed) -> None:
                try:
                    record(one_request(ep, ctx, _Conn(), cfg.model, isl, osl, seed, cfg.timeout_s, False,
                                       cfg.ignore_eos, clock) if not cfg.reuse else
                           _pooled(ep, ctx, cfg, isl, osl, seed, clock, pool, pool_lock))
                finally:
                    sem.release()

            t = threading.Thread(target=fire, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        for c in pool:
            c.close()
    wall = clock() - t0
    config = {**asdict(cfg), "isl": str(cfg.isl), "osl": str(cfg.osl)}
    return Report(endpoint=ep.url, config=config, wall_s=wall, results=sorted(results, key=lambda r: r.start),
                  roofline=roofline)


def _pooled(ep: Endpoint, ctx: ssl.SSLContext | None, cfg: Config, isl: int, osl: int, seed: int,
            clock: Callable[[], float], pool: list[http.client.HTTPConnection], lock: threading.Lock) -> Result:
    """Fixed-rate requests reuse the run's idle keep-alive connections."""
    local = _Conn()
    with lock:
        local.conn = pool.pop() if pool else None
    r = one_request(ep, ctx, local, cfg.model, isl, osl, seed, cfg.timeout_s, True, cfg.ignore_eos, clock)
    if local.conn is not None:
        with lock:
            pool.append(local.conn)
    return r


def discover_model(ep: Endpoint, timeout: float = 10.0) -> str:
    """The first model ``GET /v1/models`` lists."""
    conn = _connect(ep, ep.ssl_context(), timeout)
    try:
        conn.request("GET", f"{ep.base_path}/v1/models", headers={"Host": ep.host})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise BenchError(f"--model: GET /v1/models answered HTTP {resp.status}: name the model with --model")
        data = json.loads(body).get("data") or []
        if not data:
            raise BenchError("--model: GET /v1/models lists no model: name it with --model")
        return str(data[0]["id"])
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise BenchError(f"--url: {ep.url}: {exc.__class__.__name__}: {str(exc)[:160]}") from None
    finally:
        conn.close()


# --------------------------------------------------------------------------- output


def table_rows(report: Report) -> list[tuple[str, str]]:
    s = report.summary()

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.1f}"

    rows = [("endpoint", report.endpoint),
            ("mode", f"{report.config['mode']} (concurrency {report.config['concurrency']})"
             if report.config["mode"] == "closed" else
             f"fixed rate {report.config['rate']:g}/s ({report.config['arrival']})"),
            ("ISL / OSL", f"{report.config['isl']} / {report.config['osl']}"),
            ("requests ok / errors", f"{s['ok']} / {s['errors']}" + (f" {s['error_kinds']}" if s["errors"] else "")),
            ("wall time", f"{s['wall_s']:.2f} s"),
            ("requests/s", f"{s['requests_per_s']:.2f}"),
            ("output tokens/s", f"{s['output_tokens_per_s']:.1f}")]
    for name, label in (("ttft_s", "TTFT ms"), ("tpot_s", "TPOT ms"), ("e2e_s", "end-to-end ms")):
        q = s[name]
        rows.append((f"{label} p50/p90/p99", f"{ms(q['p50'])} / {ms(q['p90'])} / {ms(q['p99'])}"))
    r = s.get("roofline")
    if r:
        rows.append(("roofline decode bound", f"{r['decode_tokens_per_s_bound']:.1f} tokens/s "
                     f"({r['replicas']} replica(s), {r['model']} on {r['gpu']})"))
        ratio = r["ratio_output_tokens_per_s"]
        rows.append(("measured / roofline", "-" if ratio is None else f"{ratio:.4f}"))
    return rows


def roofline_of(plan: Any) -> dict[str, Any]:
    """The planner's decode bound for the whole deployment (all replicas) of a built plan."""
    cap = plan.capacity
    replicas = max(1, len(plan.serving.replicas))
    return {"model": cap.model, "gpu": cap.gpu, "precision": cap.precision, "replicas": replicas,
            "concurrency_per_replica": cap.concurrency,
            "decode_tokens_per_s_bound": round(cap.decode_tokens_per_s_bound * replicas, 1),
            "decode_tokens_per_s_per_user_bound": cap.decode_tokens_per_s_per_user_bound}


# --------------------------------------------------------------------------- CLI (registered by llmcluster.cli)


def add_parser(sub: Any, bounded: Callable[..., Any], load_spec: Callable[[Any], Any]) -> None:
    """``llmcluster bench serve``: the subcommand's options (``bounded``: the CLI's checked numbers;
    ``load_spec(args)``: the CLI's stack loader, for ``--stack``)."""
    b = sub.add_parser("bench", help="load tests (bench serve: the OpenAI API through the gateway, with mTLS)")
    bs = b.add_subparsers(dest="action", required=True)
    p = bs.add_parser("serve", help="load-test the OpenAI-compatible API: TTFT, TPOT, latency percentiles, "
                                    "tokens/s, and the ratio to the planner's roofline")
    p.add_argument("--stack", "-s", help="the stack: its gateway is the endpoint and its plan gives the roofline")
    p.add_argument("--stacks-dir", help="folder of stack files (default: ./stacks of the project)")
    p.add_argument("--url", help="an OpenAI-compatible base URL (http(s)://host:port[/v1]); with --stack, "
                                 "the stack still gives the roofline and the model")
    p.add_argument("--connect", help="address to connect to (default: the URL's host; with --stack the gateway's "
                                     "VIP or first host); SNI and Host stay the URL's hostname")
    p.add_argument("--pki-dir", help="a `llmcluster pki export` folder: the client identity and the root CA")
    p.add_argument("--client", default="admin", help="the client certificate's name in --pki-dir (default admin)")
    p.add_argument("--cacert", help="CA bundle to verify the server (default: --pki-dir's root-ca.pem)")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="its private key (PEM)")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate (tests only)")
    p.add_argument("--model", help="model name (default: the stack's serving.model, else GET /v1/models)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=bounded(int, 1, 4096), help="closed loop: this many users (default 8)")
    mode.add_argument("--rate", type=bounded(float, 0, 10000, " requests/s", low_open=True),
                      help="fixed rate: requests started per second (open loop)")
    p.add_argument("--arrival", choices=("poisson", "constant"), default="poisson", help="with --rate")
    p.add_argument("--max-in-flight", type=bounded(int, 1, 4096), default=256, help="with --rate")
    p.add_argument("--requests", type=bounded(int, 1, 1_000_000), default=100, help="requests to send (default 100)")
    p.add_argument("--duration", type=bounded(float, 0, 86400, " s", low_open=True),
                   help="stop starting requests after this many seconds")
    p.add_argument("--warmup", type=bounded(int, 0, 10000), default=2, help="requests sent first, not counted")
    p.add_argument("--isl", default="128", help="input tokens: N, uniform:A:B or normal:MEAN:SD (default 128)")
    p.add_argument("--osl", default="128", help="output tokens: same forms (default 128)")
    p.add_argument("--ignore-eos", action="store_true", help="ask the server to generate exactly the OSL")
    p.add_argument("--no-reuse", action="store_true", help="a new connection (and TLS handshake) per request")
    p.add_argument("--seed", type=bounded(int, 0, 2**31 - 1), default=0)
    p.add_argument("--timeout", type=bounded(float, 0, 3600, " s", low_open=True), default=600.0,
                   help="per-request timeout in seconds")
    p.add_argument("--json", action="store_true", help="print the report as JSON (summary and every request)")
    p.add_argument("--out", help="also write the JSON report to this new file (never overwrites)")
    p.set_defaults(func=cmd_bench_serve, set=None, load_spec=load_spec)


def _stack_endpoint(args: Any) -> tuple[Any, str, str]:
    """(plan, URL, connect address) of ``--stack``'s gateway."""
    from llmcluster.plan.build import build_plan

    plan = build_plan(args.load_spec(args))
    gw = plan.serving.gateway
    if gw is None:
        if args.url is None:
            raise BenchError(f"--stack: {args.stack} has no serving.gateway: give the endpoint with --url")
        return plan, args.url, args.connect
    from llmcluster.plan.serving import gateway_address

    return plan, f"https://{gw.hostname}:{gw.port}", gateway_address(gw, plan.ip)


def write_new(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, refusing to replace anything (a temp file hard-linked in)."""
    import os
    import tempfile

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BenchError(f"--out: {parent}: no such folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise BenchError(f"--out: {path} exists: name a new file (a report is never overwritten)") from None
    finally:
        os.unlink(tmp)


def cmd_bench_serve(args: Any) -> int:
    if args.stack is None and args.url is None:
        raise BenchError("--stack: give --stack S (its gateway) or --url URL")
    isl, osl = Dist.parse(args.isl, "--isl"), Dist.parse(args.osl, "--osl")
    cacert, cert, key = args.cacert, args.cert, args.key
    if args.pki_dir is not None:
        ca, c, k = client_material(args.pki_dir, args.client)
        cacert, cert, key = cacert or ca, cert or c, key or k
    if args.out is not None and Path(args.out).exists():
        raise BenchError(f"--out: {args.out} exists: name a new file (a report is never overwritten)")
    plan, url, connect = None, args.url, args.connect
    if args.stack is not None:
        plan, stack_url, stack_connect = _stack_endpoint(args)
        if url is None:
            url, connect = stack_url, connect or stack_connect
    ep = endpoint_from_url(url, connect=connect, cacert=cacert, cert=cert, key=key, insecure=args.insecure)
    if ep.scheme == "https" and not ep.cert:
        import sys

        sys.stderr.write("warning: no client certificate (--pki-dir or --cert/--key): an mTLS gateway refuses "
                         "every request\n")
    model = args.model or (plan.serving.model if plan is not None else None) or discover_model(ep)
    cfg = Config(model=model, isl=isl, osl=osl, mode="rate" if args.rate else "closed",
                 concurrency=args.concurrency or 8, rate=args.rate or 0.0, arrival=args.arrival,
                 max_in_flight=args.max_in_flight, requests=args.requests, duration_s=args.duration,
                 warmup=args.warmup, seed=args.seed, timeout_s=args.timeout, reuse=not args.no_reuse,
                 ignore_eos=args.ignore_eos)
    report = run(ep, cfg, roofline=roofline_of(plan) if plan is not None else None)
    doc = report.to_dict()
    if args.out is not None:
        write_new(Path(args.out), json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    if args.json:
        import sys

        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="llmcluster bench serve", show_header=False)
        for k, v in table_rows(report):
            t.add_row(k, v)
        Console(highlight=False, soft_wrap=True).print(t)
    return 0 if report.summary()["ok"] > 0 else 1
