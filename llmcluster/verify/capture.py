"""What crosses the wire to and from a TCP port, seen from a host (standard library only).

This file runs *on* the hosts, as ``python3 -c <this file's text> MODE ARGS...`` (hosts have
python3 and iproute2, no tcpdump); :mod:`llmcluster.verify.upstream` sends it and judges what it
prints, and the unit tests import its parsers. Modes, each printing one JSON document:

* ``probe ADDRESS PORT``: connect, send a plain ``GET /health HTTP/1.1`` and read what comes back
  (a TLS-only listener closes or answers with a TLS alert, never ``HTTP/``);
* ``capture IFACE ADDRESS PORTS SECONDS MARKER OUTFILE``: open an ``AF_PACKET`` raw socket on
  ``IFACE`` (``-``: the interface that holds ``ADDRESS``), then detach and, for ``SECONDS``,
  classify every TCP payload to or from one of ``PORTS`` (comma-separated): a TLS record header,
  cleartext HTTP (a request method or ``HTTP/1.``), or other; count payloads holding ``MARKER``
  (the text of the request sent meanwhile); write the counts to ``OUTFILE``. Prints at once
  whether the capture started (needs root or CAP_NET_RAW);
* ``result OUTFILE WAIT_S``: wait for the capture's counts, print them and remove the file.

Nothing here changes the host's configuration.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time

ETH_P_ALL = 0x0003
#: 802.1Q and 802.1ad tags (a capture on a trunk sees them).
VLAN_ETHERTYPES = (0x8100, 0x88A8)
ARPHRD_NONE = 0xFFFE  # tun-like devices: frames start with the IP header
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
#: What a cleartext HTTP/1.x message starts with (requests, then responses); HTTP/2's preface.
HTTP_STARTS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ",
               b"HTTP/1.", b"PRI * HTTP/2")
#: TLS record content types: change_cipher_spec, alert, handshake, application_data.
TLS_CONTENT_TYPES = (20, 21, 22, 23)
SAMPLES = 5


def classify(payload: bytes) -> str:
    """``http``, ``tls`` (a TLS record header: type 20-23, version 3.x), ``other`` or ``empty``."""
    if not payload:
        return "empty"
    if payload.startswith(HTTP_STARTS):
        return "http"
    if len(payload) >= 5 and payload[0] in TLS_CONTENT_TYPES and payload[1] == 3 and payload[2] <= 4:
        return "tls"
    return "other"


def parse_frame(frame: bytes, raw_ip: bool = False):
    """``(src, dst, sport, dport, payload)`` of the TCP segment in a link-layer frame, or None.

    ``frame``: an Ethernet frame (VLAN tags skipped; loopback has a zeroed Ethernet header), or an
    IP packet when ``raw_ip``. The payload ends where the IP length says (Ethernet pads short
    frames); non-first IPv4 fragments and IPv6 extension headers are not parsed (None)."""
    if raw_ip:
        if not frame:
            return None
        etype, off = (0x0800 if frame[0] >> 4 == 4 else 0x86DD), 0
    else:
        if len(frame) < 14:
            return None
        etype, off = struct.unpack("!H", frame[12:14])[0], 14
        while etype in VLAN_ETHERTYPES:
            if len(frame) < off + 4:
                return None
            etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
    ip = frame[off:]
    if etype == 0x0800:
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        fragment_offset = struct.unpack("!H", ip[6:8])[0] & 0x1FFF
        if ip[9] != 6 or ihl < 20 or fragment_offset or len(ip) < ihl:
            return None
        if total >= ihl:  # 0 on some offloaded (TSO/GRO) packets: keep the captured length then
            ip = ip[:total]
        src, dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        segment = ip[ihl:]
    elif etype == 0x86DD:
        if len(ip) < 40 or ip[0] >> 4 != 6 or ip[6] != 6:
            return None
        length = struct.unpack("!H", ip[4:6])[0]
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        segment = ip[40:40 + length] if length else ip[40:]
    else:
        return None
    if len(segment) < 20:
        return None
    sport, dport = struct.unpack("!HH", segment[:4])
    data_offset = (segment[12] >> 4) * 4
    if data_offset < 20 or len(segment) < data_offset:
        return None
    return src, dst, sport, dport, segment[data_offset:]


def new_counts(ports) -> dict:
    return {"ports": sorted(ports), "frames": 0, "segments": 0, "payloads": 0, "tls": 0, "http": 0, "other": 0,
            "marker": 0, "http_samples": [], "peers": []}


def account(counts: dict, parsed, ports, marker: bytes = b"") -> None:
    """Add one parsed frame to ``counts`` when it is TCP to or from one of ``ports``."""
    counts["frames"] += 1
    if parsed is None:
        return
    src, dst, sport, dport, payload = parsed
    if sport not in ports and dport not in ports:
        return
    counts["segments"] += 1
    peer = f"{src}:{sport}>{dst}:{dport}"
    if peer not in counts["peers"] and len(counts["peers"]) < 20:
        counts["peers"].append(peer)
    kind = classify(payload)
    if kind == "empty":
        return
    counts["payloads"] += 1
    counts[kind] += 1
    if kind == "http" and len(counts["http_samples"]) < SAMPLES:
        counts["http_samples"].append(f"{peer} {payload[:60].decode('latin-1')!r}")
    if marker and marker in payload:
        counts["marker"] += 1


def interface_of(address: str) -> str:
    """The interface holding ``address`` (``ip -j addr``)."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=20, check=True).stdout
    for link in json.loads(out or "[]"):
        if any(a.get("local") == address for a in link.get("addr_info", [])):
            return link["ifname"]
    raise LookupError(f"no interface holds {address}")


def probe(address: str, port: int, timeout: float = 5.0) -> dict:
    out = {"address": address, "port": port, "connected": False, "response": "", "http": False, "error": ""}
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            out["connected"] = True
            s.settimeout(timeout)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: llmcluster-probe\r\nConnection: close\r\n\r\n")
            data = b""
            while len(data) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        data = b""
    out["response"] = data[:64].decode("latin-1")
    out["http"] = data.startswith(b"HTTP/")
    return out


def capture(sock, ports, seconds: float, marker: bytes) -> dict:
    counts = new_counts(ports)
    end = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            frame, addr = sock.recvfrom(262144)
        except TimeoutError:
            continue
        if addr[3] == ARPHRD_LOOPBACK and addr[2] == PACKET_OUTGOING:
            continue  # loopback shows every packet twice
        account(counts, parse_frame(frame, raw_ip=addr[3] == ARPHRD_NONE), ports, marker)
    return counts


def _write(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def start_capture(iface: str, address: str, ports, seconds: float, marker: bytes, outfile: str) -> dict:
    try:
        name = iface if iface != "-" else interface_of(address)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((name, 0))
    except (OSError, LookupError, ValueError, subprocess.SubprocessError) as exc:
        return {"started": False, "error": f"{type(exc).__name__}: {exc}"}
    for stale in (outfile, f"{outfile}.tmp"):
        if os.path.exists(stale):
            os.unlink(stale)
    pid = os.fork()
    if pid:
        sock.close()
        return {"started": True, "interface": name, "pid": pid, "seconds": seconds, "ports": sorted(ports)}
    # The child: detached from the caller's session and output, captures, writes, exits.
    os.setsid()
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    try:
        doc = {"interface": name, **capture(sock, ports, seconds, marker)}
    except Exception as exc:  # reported to the judge, never lost
        doc = {"interface": name, "error": f"{type(exc).__name__}: {exc}"}
    _write(outfile, doc)
    os._exit(0)


def result(outfile: str, wait_s: float) -> dict:
    end = time.monotonic() + wait_s
    while not os.path.exists(outfile):
        if time.monotonic() > end:
            return {"error": f"no capture result in {outfile} after {wait_s:g} s"}
        time.sleep(0.2)
    with open(outfile, encoding="utf-8") as f:
        doc = json.load(f)
    os.unlink(outfile)
    return doc


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else ""
    if mode == "probe" and len(argv) == 3:
        doc = probe(argv[1], int(argv[2]))
    elif mode == "capture" and len(argv) == 7:
        ports = {int(p) for p in argv[3].split(",") if p}
        doc = start_capture(argv[1], argv[2], ports, float(argv[4]), argv[5].encode(), argv[6])
    elif mode == "result" and len(argv) == 3:
        doc = result(argv[1], float(argv[2]))
    else:
        print(json.dumps({"error": "usage: probe ADDRESS PORT | capture IFACE ADDRESS PORTS SECONDS MARKER OUTFILE"
                                   " | result OUTFILE WAIT_S"}))
        return 2
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
