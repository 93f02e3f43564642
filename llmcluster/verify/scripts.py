"""Python 3 programs the verification suite runs *on* the hosts (as ``python3 -c``).

Hosts need only python3 (Ansible needs it anyway) and iproute2/nftables. Every program
prints one JSON document on stdout and never changes the host's configuration:

* :data:`GATHER` — the facts of one host: ``ip -j addr``, ``tc -j qdisc`` and ``tc class`` (text:
  iproute2 6.1 prints htb classes without JSON) of the given interfaces, ``nft -j list table inet llmcluster``;
* :data:`LISTEN` — a temporary listener for the firewall matrix on the given ``proto/port@address``
  specs (bound to that address; ``proto/port``: every address. TCP: accepts and answers a banner;
  UDP: echoes), detached, exiting by itself after
  its lifetime or when its pid file is removed; ports already in use are reported and left to
  the service that owns them (a real sshd or trtllm-serve answers the probe just as well);
* :data:`PROBE` — connection attempts from one source address, all in parallel: ``open``
  (TCP connected and banner read / UDP echo received), ``refused`` or ``timeout``.
"""

from __future__ import annotations

GATHER = r'''
import json, subprocess, sys
def run(cmd, text=False):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout).strip() or ("exit %d" % p.returncode)}
    if text:
        return {"data": p.stdout}
    try:
        return {"data": json.loads(p.stdout) if p.stdout.strip() else []}
    except ValueError as e:
        return {"error": "not JSON: %s" % e}
out = {"ip": run(["ip", "-j", "addr", "show"]), "tc": {},
       "nft": run(["nft", "-j", "list", "table", "inet", "llmcluster"])}
for dev in sys.argv[1:]:
    out["tc"][dev] = {"qdisc": run(["tc", "-j", "qdisc", "show", "dev", dev]),
                      "class": run(["tc", "class", "show", "dev", dev], text=True)}
print(json.dumps(out))
'''

LISTEN = r'''
import json, os, socket, sys, threading, time
pidfile, lifetime, specs = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
if os.fork():
    for _ in range(100):
        if os.path.exists(pidfile):
            break
        time.sleep(0.05)
    print(open(pidfile + ".json").read() if os.path.exists(pidfile + ".json") else "{}")
    sys.exit(0)
os.setsid()
sys.stdin.close()
fd = os.open(os.devnull, os.O_RDWR)
os.dup2(fd, 1); os.dup2(fd, 2)
report, socks = {}, []
for spec in specs:
    proto, rest = spec.split("/", 1)
    port, _, address = rest.partition("@")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((address or "0.0.0.0", int(port)))
        if proto == "tcp":
            s.listen(64)
        socks.append((proto, s)); report[spec] = "listening"
    except OSError as e:
        s.close(); report[spec] = "in use" if e.errno == 98 else str(e)
with open(pidfile + ".json", "w") as f:
    json.dump(report, f)
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
def serve(proto, s):
    while True:
        try:
            if proto == "tcp":
                c, _ = s.accept(); c.sendall(b"llmcluster-verify\n"); c.close()
            else:
                data, addr = s.recvfrom(2048); s.sendto(data, addr)
        except OSError:
            return
for proto, s in socks:
    threading.Thread(target=serve, args=(proto, s), daemon=True).start()
deadline = time.time() + lifetime
while time.time() < deadline and os.path.exists(pidfile):
    time.sleep(0.2)
for name in (pidfile, pidfile + ".json"):
    try:
        os.unlink(name)
    except OSError:
        pass
'''

PROBE = r'''
import json, socket, sys, threading
timeout, targets = float(sys.argv[1]), json.loads(sys.argv[2])
results = [None] * len(targets)
def attempt(i, t):
    src, dst, proto, port = t["source"], t["address"], t["proto"], int(t["port"])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((dst, port))
        if proto == "udp":
            s.send(b"llmcluster-verify")
            s.recv(64)
        results[i] = "open"
    except ConnectionRefusedError:
        results[i] = "refused"
    except socket.timeout:
        results[i] = "timeout"
    except OSError as e:
        results[i] = "error: %s" % e
    finally:
        s.close()
threads = [threading.Thread(target=attempt, args=(i, t)) for i, t in enumerate(targets)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
'''

STOP = r'''
import os, sys
for pidfile in sys.argv[1:]:
    try:
        os.unlink(pidfile)
    except OSError:
        pass
'''
