"""The capture helper of the ``upstream-tls`` check (llmcluster/verify/capture.py, run on the hosts)
and its judges (llmcluster/verify/upstream.py), on handcrafted frames: Ethernet, 802.1Q, IPv4 with
padding and fragments, IPv6, raw IP; TLS records, cleartext requests and responses, the marker.
The real capture on loopback runs in tests/roles/test_serving_tls_local.py."""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import threading

import pytest

from llmcluster.verify import capture as C
from llmcluster.verify import upstream as U

GW, GPU = "10.42.1.13", "10.42.1.11"
GW6, GPU6 = "fd00:42:1::13", "fd00:42:1::11"
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
TLS_APP = bytes([23, 3, 3, 0, 32]) + bytes(range(32))
TLS_HELLO = bytes([22, 3, 1, 0, 64]) + b"\x01" + bytes(63)


def tcp(sport: int, dport: int, payload: bytes, options: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset << 4, 0x18, 65535, 0, 0) + options + payload


def ipv4(src: str, dst: str, segment: bytes, proto: int = 6, fragment: int = 0, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(segment), 7, fragment, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + options + segment


def ipv6(src: str, dst: str, segment: bytes, next_header: int = 6) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(segment), next_header, 64, socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + segment


def ether(packet: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, vid) for vid in vlans)
    frame = MAC_A + MAC_B + tags + struct.pack("!H", ethertype) + packet
    return frame + bytes(max(0, 60 - len(frame)))  # Ethernet pads short frames to 60 bytes


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(("payload", "kind"), [
    (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "http"),
    (b'POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}', "http"),
    (b"HTTP/1.1 200 OK\r\n", "http"),
    (b"HTTP/1.0 403 Forbidden\r\n", "http"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http"),
    (TLS_APP, "tls"),
    (TLS_HELLO, "tls"),
    (bytes([21, 3, 3, 0, 2, 2, 40]), "tls"),  # an alert
    (bytes([20, 3, 3, 0, 1, 1]), "tls"),  # change_cipher_spec (TLS 1.3 middlebox compatibility)
    (bytes([23, 2, 0, 0, 5]) + bytes(5), "other"),  # not version 3.x
    (bytes([24, 3, 3, 0, 5]) + bytes(5), "other"),  # heartbeat: not expected here
    (b"\x17\x03", "other"),  # too short for a record header
    (b"get /health HTTP/1.1", "other"),  # methods are case-sensitive
    (b"\x9f\x00garbage in the middle of a record", "other"),
    (b"", "empty"),
])
def test_classify(payload, kind):
    assert C.classify(payload) == kind


# --------------------------------------------------------------------------- frames


def test_ethernet_ipv4_tcp():
    frame = ether(ipv4(GW, GPU, tcp(40000, 8000, b"GET / HTTP/1.1\r\n\r\n")))
    assert C.parse_frame(frame) == (GW, GPU, 40000, 8000, b"GET / HTTP/1.1\r\n\r\n")


def test_padding_is_not_payload():
    """A bare ACK in a 60-byte frame: the padding after the IP length is no TCP payload."""
    frame = ether(ipv4(GPU, GW, tcp(8000, 40000, b"")))
    assert len(frame) == 60 and frame[-6:] == bytes(6)
    assert C.parse_frame(frame) == (GPU, GW, 8000, 40000, b"")
    # Padding that happens to look like a request is still not payload.
    real = ether(ipv4(GPU, GW, tcp(8000, 40000, b"")))[:54] + b"GET /x"
    assert C.parse_frame(real)[4] == b""


def test_ip_and_tcp_options_are_skipped():
    frame = ether(ipv4(GW, GPU, tcp(40000, 8000, TLS_APP, options=b"\x01\x01\x08\x0a" + bytes(8)),
                       options=b"\x01\x01\x01\x00"))
    assert C.parse_frame(frame) == (GW, GPU, 40000, 8000, TLS_APP)


def test_vlan_tags_are_skipped():
    packet = ipv4(GW, GPU, tcp(40000, 8000, TLS_APP))
    assert C.parse_frame(ether(packet, vlans=(20,))) == (GW, GPU, 40000, 8000, TLS_APP)
    assert C.parse_frame(ether(packet, vlans=(100, 20))) == (GW, GPU, 40000, 8000, TLS_APP)
    assert C.parse_frame(MAC_A + MAC_B + b"\x81\x00\x00") is None  # truncated tag


def test_ipv6():
    frame = ether(ipv6(GW6, GPU6, tcp(40000, 8000, b"POST /v1/completions HTTP/1.1\r\n")), 0x86DD)
    assert C.parse_frame(frame) == (GW6, GPU6, 40000, 8000, b"POST /v1/completions HTTP/1.1\r\n")
    # An extension header before TCP is not parsed (reported as not TCP, never misread).
    assert C.parse_frame(ether(ipv6(GW6, GPU6, bytes(8) + tcp(1, 2, b"x"), next_header=0), 0x86DD)) is None


def test_raw_ip_frames():
    assert C.parse_frame(ipv4(GW, GPU, tcp(1, 8000, TLS_APP)), raw_ip=True) == (GW, GPU, 1, 8000, TLS_APP)
    assert C.parse_frame(ipv6(GW6, GPU6, tcp(1, 8000, b"x")), raw_ip=True)[4] == b"x"
    assert C.parse_frame(b"", raw_ip=True) is None


@pytest.mark.parametrize("frame", [
    ether(ipv4(GW, GPU, b"\x00" * 8, proto=17)),  # UDP
    ether(ipv4(GW, GPU, tcp(1, 8000, b"GET / HTTP/1.1"), fragment=185)),  # a later fragment
    ether(b"\x00" * 28, ethertype=0x0806),  # ARP
    ether(ipv4(GW, GPU, tcp(1, 8000, b""))[:30]),  # truncated TCP header (then padded)
    MAC_A + MAC_B + b"\x08\x00" + b"\x45",  # truncated IPv4 header
    b"\x00" * 10,
    b"",
])
def test_what_is_not_a_tcp_segment(frame):
    assert C.parse_frame(frame) is None


def test_garbage_never_raises():
    rng = random.Random(1234)
    for n in range(3000):
        frame = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        if n % 3 == 0 and len(frame) > 14:  # make many of them look like IPv4 / IPv6 over Ethernet
            frame = frame[:12] + rng.choice((b"\x08\x00", b"\x86\xdd", b"\x81\x00")) + frame[14:]
        parsed = C.parse_frame(frame, raw_ip=n % 7 == 0)
        assert parsed is None or (len(parsed) == 5 and isinstance(parsed[4], bytes))


# --------------------------------------------------------------------------- counting


def test_account_counts_only_the_ports_and_finds_cleartext_and_the_marker():
    marker = b"llmcluster-capture-0123456789abcdef"
    counts = C.new_counts({8000})
    frames = [
        ether(ipv4(GW, GPU, tcp(40000, 8000, TLS_HELLO))),
        ether(ipv4(GPU, GW, tcp(8000, 40000, TLS_APP))),
        ether(ipv4(GPU, GW, tcp(8000, 40000, b""))),  # ACK
        ether(ipv4(GW, GPU, tcp(40000, 8000, b"\x8f\x11 middle of a record"))),
        ether(ipv4(GW, GPU, tcp(40000, 22, b"GET / HTTP/1.1\r\n"))),  # another port: not counted
        ether(ipv4(GW, GPU, b"\x00" * 8, proto=17)),
    ]
    for f in frames:
        C.account(counts, C.parse_frame(f), {8000}, marker)
    assert (counts["frames"], counts["segments"], counts["payloads"]) == (6, 4, 3)
    assert (counts["tls"], counts["other"], counts["http"], counts["marker"]) == (2, 1, 0, 0)
    assert not U.judge_capture({"interface": "inference", **counts}, "gpu-01")
    # Cleartext: a request with the marker in its body, and the answer.
    request = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 60\r\n\r\n{\"content\": \"" + marker + b"\"}"
    C.account(counts, C.parse_frame(ether(ipv4(GW, GPU, tcp(40001, 8000, request)))), {8000}, marker)
    C.account(counts, C.parse_frame(ether(ipv4(GPU, GW, tcp(8000, 40001, b"HTTP/1.1 200 OK\r\n")))), {8000}, marker)
    assert (counts["http"], counts["marker"]) == (2, 1)
    assert counts["http_samples"][0].startswith(f"{GW}:40001>{GPU}:8000 'POST /v1/chat")
    problems = U.judge_capture({"interface": "inference", **counts}, "gpu-01")
    assert len(problems) == 2 and "cleartext HTTP" in problems[0] and "marker" in problems[1]
    # The marker in a later segment of the same request (not at its start) is still found.
    later = C.new_counts({8000})
    C.account(later, C.parse_frame(ether(ipv4(GW, GPU, tcp(40002, 8000, b"...\"" + marker + b"\"}")))), {8000}, marker)
    assert (later["http"], later["marker"], later["other"]) == (0, 1, 1)


def test_http_samples_are_bounded():
    counts = C.new_counts({8000})
    for i in range(20):
        C.account(counts, C.parse_frame(ether(ipv4(GW, GPU, tcp(40000 + i, 8000, b"GET / HTTP/1.1\r\n")))), {8000})
    assert counts["http"] == 20 and len(counts["http_samples"]) == C.SAMPLES and len(counts["peers"]) <= 20


# --------------------------------------------------------------------------- judges


def test_judge_capture_refuses_empty_partial_and_silent_captures():
    assert U.judge_capture(None, "x") and U.judge_capture({}, "x")
    assert "no capture result" in U.judge_capture({"error": "PermissionError: [Errno 1]"}, "x")[0]
    silent = {"interface": "inference", **C.new_counts({8000})}
    assert "no TLS record" in U.judge_capture(silent, "x")[0]
    ok = {**silent, "segments": 4, "payloads": 2, "tls": 2}
    assert U.judge_capture(ok, "x") == [] and U.judge_capture(ok, "x", answered=True) == []
    assert "reached this upstream" in U.judge_capture(ok, "x", answered=False)[0]


def test_judge_probe():
    assert U.judge_probe({"connected": True, "http": False, "response": ""}, "x") == []
    assert U.judge_probe({"connected": True, "http": False, "response": "\x15\x03\x03\x00\x02\x02\x46"}, "x") == []
    assert "answered plain HTTP" in U.judge_probe({"connected": True, "http": True, "response": "HTTP/1.1 200"},
                                                  "x")[0]
    assert "nothing accepted" in U.judge_probe({"connected": False, "http": False, "error": "refused"}, "x")[0]
    assert U.judge_probe(None, "x") and U.judge_probe({"error": "usage"}, "x")


def test_arguments_and_marker():
    m1, m2 = U.new_marker(), U.new_marker()
    assert m1 != m2 and m1.startswith("llmcluster-capture-") and m1 in U.chat_body(m1)
    assert U.capture_args(None, GPU, 8000, m1, "/run/x.json") == ["capture", "-", GPU, "8000", "8", m1, "/run/x.json"]
    assert U.probe_args(GPU, 8000) == ["probe", GPU, "8000"]
    assert U.result_args("/run/x.json") == ["result", "/run/x.json", "20"]


# --------------------------------------------------------------------------- the program itself (loopback)


def _run(*args: str) -> dict:
    import json

    r = subprocess.run([sys.executable, "-c", U.capture_source(), *args], capture_output=True, text=True, timeout=30,
                       check=False)
    return json.loads(r.stdout)


def _listener(handler) -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                handler(conn)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_probe_mode_tells_plain_http_from_a_tls_only_listener():
    def http(conn):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def tls_only(conn):  # what a TLS listener does with a plaintext request: an alert, then close
        conn.recv(1024)
        conn.sendall(bytes([21, 3, 3, 0, 2, 2, 70]))

    s1, p1 = _listener(http)
    s2, p2 = _listener(tls_only)
    try:
        plain = _run(*U.probe_args("127.0.0.1", p1))
        assert plain["connected"] and plain["http"] and U.judge_probe(plain, "plain")
        tls = _run(*U.probe_args("127.0.0.1", p2))
        assert tls["connected"] and not tls["http"] and U.judge_probe(tls, "tls") == []
    finally:
        for s in (s1, s2):
            s.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            s.close()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    closed = _run(*U.probe_args("127.0.0.1", free))
    assert not closed["connected"] and "nothing accepted" in U.judge_probe(closed, "closed")[0]


def test_usage_errors_are_json():
    assert "usage" in _run("nonsense")["error"]
    r = _run("result", "/nonexistent/llmcluster-capture.json", "0")
    assert "no capture result" in r["error"] and U.judge_capture(r, "x")
