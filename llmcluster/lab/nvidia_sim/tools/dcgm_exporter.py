#!/usr/bin/python3
"""SIMULATION (llmcluster lab): stand-in ``dcgm-exporter`` (Prometheus metrics of the simulated GPUs).

Serves ``/metrics`` (DCGM_FI_DEV_* gauges labelled ``gpu``, ``UUID``, ``pci_bus_id``, ``device``,
``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``) and ``/health`` over HTTP. Each setting,
first found: the flag, the real tool's environment variable (the unit loads
/etc/default/nvidia-dcgm-exporter), that variable's line in /etc/default/nvidia-dcgm-exporter:
listen address ``-a/--address`` / ``DCGM_EXPORTER_LISTEN`` (default ``:9400``); collectors CSV
``-f/--collectors`` / ``DCGM_EXPORTER_COLLECTORS`` (only the listed fields; default all); remote host
engine ``-r/--remote-hostengine-info`` / ``DCGM_REMOTE_HOSTENGINE_INFO`` (must answer at start,
default embedded); web configuration ``--web-config-file`` / ``DCGM_EXPORTER_WEB_CONFIG_FILE`` (default
none: plain HTTP). Runs in the foreground. No real GPU is used.

The web configuration follows the real exporter's (Prometheus exporter-toolkit's ``tls_server_config``)
for the keys it simulates: ``cert_file`` and ``key_file`` (neither: plain HTTP; one alone: an error),
``client_auth_type`` (``NoClientCert``, the default; ``VerifyClientCertIfGiven``;
``RequireAndVerifyClientCert``: a client certificate is required and verified against
``client_ca_file``), ``min_version`` / ``max_version`` (``TLS10``..``TLS13``; default TLS 1.2 to 1.3).
Unknown keys fail as in the real one (strict parsing); the keys exporter-toolkit has and this stand-in
does not simulate (cipher suites, curves, allowed SANs, basic auth, HTTP headers) fail too, rather
than being ignored. The certificates are loaded once at start (the real one re-reads them per handshake).
"""
import os
import socket
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# --- sim:common begin
from llmcluster.lab.nvidia_sim.tools._common import (
    Stop,
    hostname,
    installed_driver_version,
    load_faults,
    load_hardware,
    log,
    sim_path,
    visible_gpus,
)

# --- sim:common end

BAKED = {"version": "0.0.0"}  # sim:baked
VERSION = BAKED["version"]
PROG = "dcgm-exporter"
ENV_FILE = sim_path("/etc/default/nvidia-dcgm-exporter")

METRICS = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", lambda g: 1980),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", lambda g: 2619),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda g: 30 + (g["index"] * 3) % 9),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).",
     lambda g: round(g["power_limit_w"] * 0.1 + g["index"], 3)),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda g: 0),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", lambda g: 0),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", lambda g: g["memory_total_mib"] - 1),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", lambda g: 1),
    # faults.json {"xid": {"<gpu index>": <xid>}}: the last XID of that GPU (a gauge that never resets, as the real one)
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", lambda g: g.get("xid", 0)),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors.", lambda g: 0),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter",
     "Total number of NVLink bandwidth counters for all lanes.", lambda g: 0),
]


def option(argv, short: str, long: str, env: str, default: str) -> str:
    """A flag's value, else the environment variable, else its line in the env file, else ``default``."""
    for i, arg in enumerate(argv):
        if arg in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    if os.environ.get(env):
        return os.environ[env]
    try:
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip() == env and value.strip():
                return value.strip().strip('"').strip("'")
    except OSError:
        pass
    return default


def collectors(path: str) -> set:
    """Field names listed in a collectors CSV (``DCGM_FI_DEV_GPU_TEMP, gauge, help``); empty: all."""
    if not path:
        return set()
    try:
        text = (sim_path(path) if path.startswith("/") else Path(path)).read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.split(",")[0].strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


ENABLED: set = set()

# --------------------------------------------------------------------------- web configuration

#: exporter-toolkit's ``tls_server_config`` keys this stand-in simulates, and those it knows but refuses.
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
TLS_NOT_SIMULATED = {"cert", "key", "client_ca", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                     "client_allowed_sans"}
TOP_KEYS = {"tls_server_config"}
TOP_NOT_SIMULATED = {"http_server_config", "basic_auth_users"}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}


class WebConfigError(ValueError):
    pass


def parse_mapping(text: str) -> dict:
    """The block-mapping subset of YAML a web configuration uses (nested ``key: value``, comments,
    quoted scalars); lab hosts have no PyYAML. Anything else (lists, flow collections) is an error."""
    root: dict = {}
    stack = [(-1, root)]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line.strip() == "---":
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = line.strip().partition(":")
        if not sep or not key or key.startswith(("-", "[", "{")) or value.strip().startswith(("[", "{", "-", "|", ">")):
            raise WebConfigError(f"line {n}: not a key: value mapping the simulation parses: {raw.strip()!r}")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if key in parent:
            raise WebConfigError(f"line {n}: key {key!r} already set")
        value = value.strip()
        if not value:
            parent[key] = {}
            stack.append((indent, parent[key]))
        else:
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            parent[key] = value
    return root


def web_config(path: str) -> dict:
    """The file's ``tls_server_config`` (``{}``: no TLS), checked as strictly as exporter-toolkit does."""
    try:
        doc = parse_mapping((sim_path(path) if path.startswith("/") else Path(path)).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WebConfigError(f"cannot read the web configuration {path}: {exc}") from None
    for key in doc:
        if key in TOP_NOT_SIMULATED:
            raise WebConfigError(f"{key}: not simulated by the stand-in dcgm-exporter")
        if key not in TOP_KEYS:
            raise WebConfigError(f"field {key} not found in type web.Config")
    tls = doc.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise WebConfigError("tls_server_config: not a mapping")
    for key in tls:
        if key in TLS_NOT_SIMULATED:
            raise WebConfigError(f"tls_server_config.{key}: not simulated by the stand-in dcgm-exporter")
        if key not in TLS_KEYS:
            raise WebConfigError(f"field {key} not found in type web.TLSConfig")
    return tls


def tls_context(tls: dict) -> "ssl.SSLContext | None":
    """The server context of a ``tls_server_config`` (None: plain HTTP, as without cert_file and key_file)."""
    cert, key = tls.get("cert_file", ""), tls.get("key_file", "")
    if not cert and not key:
        return None
    if not cert:
        raise WebConfigError("missing cert_file")
    if not key:
        raise WebConfigError("missing key_file")
    auth = tls.get("client_auth_type", "")
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        raise WebConfigError(f"client_auth_type {auth}: not simulated by the stand-in dcgm-exporter")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"invalid ClientAuth: {auth!r}")
    versions = {}
    for field, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = tls.get(field, "") or default
        if name not in TLS_VERSIONS:
            raise WebConfigError(f"unknown TLS version: {name}")
        versions[field] = TLS_VERSIONS[name]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = versions["min_version"], versions["max_version"]
    try:
        ctx.load_cert_chain(str(sim_path(cert) if cert.startswith("/") else cert),
                            str(sim_path(key) if key.startswith("/") else key))
        ca = tls.get("client_ca_file", "")
        if ca:
            ctx.load_verify_locations(str(sim_path(ca) if ca.startswith("/") else ca))
        elif CLIENT_AUTH[auth] != ssl.CERT_NONE:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go's nil ClientCAs: the system roots
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"loading the TLS material: {exc}") from None
    ctx.verify_mode = CLIENT_AUTH[auth]
    return ctx


class Server(ThreadingHTTPServer):
    """HTTP, or HTTPS with the web configuration's context: the handshake runs in the request's
    thread (a client that stalls blocks nobody); a refused handshake closes the connection."""

    daemon_threads = True
    allow_reuse_address = True
    tls: "ssl.SSLContext | None" = None

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log(PROG, f"http: TLS handshake error from {client_address[0]}:{client_address[1]}: {exc}")
            return None
        try:
            return super().finish_request(conn, client_address)
        finally:
            conn.close()


def render() -> str:
    hw = load_hardware()
    driver = installed_driver_version() or ""
    faults = load_faults()
    gpus = visible_gpus(hw, faults) if hw else []
    xids = faults.get("xid") if isinstance(faults.get("xid"), dict) else {}
    for gpu in gpus:
        try:
            gpu["xid"] = int(xids.get(str(gpu["index"]), 0))
        except (TypeError, ValueError):
            gpu["xid"] = 0
    host = hostname()
    out = []
    metrics = [m for m in METRICS if m[0] in ENABLED] or METRICS
    for name, kind, help_text, value in metrics:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for gpu in gpus:
            labels = (f'gpu="{gpu["index"]}",UUID="{gpu["uuid"]}",pci_bus_id="{gpu["pci_bus_id"]}",'
                      f'device="nvidia{gpu["index"]}",modelName="{gpu["name"]}",Hostname="{host}",'
                      f'DCGM_FI_DRIVER_VERSION="{driver}"')
            out.append(f"{name}{{{labels}}} {value(gpu)}")
    return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    server_version = "dcgm-exporter-simulated"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status: int, body: str, ctype: str = "text/plain; version=0.0.4; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, render())
        elif path == "/health":
            self._send(200, "OK\n", "text/plain")
        elif path == "/":
            self._send(200, '<html><body><a href="/metrics">Metrics</a> (SIMULATED dcgm-exporter)</body></html>',
                       "text/html")
        else:
            self._send(404, "404 page not found\n")


def main(argv) -> int:
    if "--version" in argv or "-v" in argv:
        print(f"DCGM Exporter version {VERSION}-simulated")
        return 0
    if load_hardware() is None or installed_driver_version() is None:
        log(PROG, "Failed to initialize NVML: the NVIDIA driver is not loaded")
        return 1
    address = option(argv, "-a", "--address", "DCGM_EXPORTER_LISTEN", ":9400")
    ENABLED.update(collectors(option(argv, "-f", "--collectors", "DCGM_EXPORTER_COLLECTORS", "")))
    remote = option(argv, "-r", "--remote-hostengine-info", "DCGM_REMOTE_HOSTENGINE_INFO", "")
    if remote:  # like the real exporter: a remote host engine must answer, else it exits
        rhost, _, rport = remote.rpartition(":") if ":" in remote else (remote, "", "5555")
        try:
            socket.create_connection((rhost or "127.0.0.1", int(rport or 5555)), timeout=3).close()
        except (OSError, ValueError) as exc:
            log(PROG, f"Failed to connect to the remote host engine at {remote}: {exc}")
            return 1
    config = option(argv, "--web-config-file", "--web-config-file", "DCGM_EXPORTER_WEB_CONFIG_FILE", "")
    try:
        tls = tls_context(web_config(config)) if config else None
    except WebConfigError as exc:
        log(PROG, f"Failed to load the web configuration {config}: {exc}")
        return 1
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        server = Server((host, int(port)), Handler)
    except (OSError, ValueError) as exc:
        log(PROG, f"Failed to listen on {address}: {exc}")
        return 1
    server.tls = tls
    Stop.install()
    server.timeout = 0.5
    log(PROG, f"Starting webserver on {address} (TLS={'true' if tls else 'false'})")
    while not Stop.event.is_set():
        server.handle_request()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
