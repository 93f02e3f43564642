"""The common role's host hardening, rendered by Ansible from the role's templates and checked
for real on this machine — no lab needed, nothing of this machine's kernel changed.

* SSH: the drop-in runs in a real sshd on 127.0.0.1 (a free port, a temporary ed25519 host
  key, the distribution's sshd_config included after it as on a host); ssh-audit rates it with
  0 fail and only the warnings the README justifies, while the stock configuration fails (the
  control); sshd -T applies every setting; a login works, TCP and agent forwarding are refused
  (the stock configuration allows both).
* Kernel hardening: the role's check script and systemd-sysctl, limited to the per-namespace
  keys as on the lab's namespace hosts, run in a new network namespace (``unshare --net``): they
  set that namespace's values and leave this machine's untouched. No kernel.*, fs.* or vm.*
  key is ever written here.
* Audit: every rule of the rendered rules file is parsed with libaudit (the library auditctl
  parses with), without loading anything; its syscalls exist on x86_64 and aarch64 (64- and
  32-bit). auditctl, augenrules and auditd never run here.
* The preflight refuses what would lock an administrator out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import role_local as R
from tests.helpers import ssh_audit

ROLE = ROOT / "roles" / "common"
SSHD = "/usr/sbin/sshd"
TEMPLATES = {"sshd": "sshd-llmcluster.conf.j2", "sysctl": "sysctl-hardening.conf.j2", "audit": "audit.rules.j2",
             "unit": "ssh-listen.conf.j2"}

RENDER = R.local_play("Render the common role's hardening files", role=ROLE, tasks=[
    {"name": "Render", "ansible.builtin.template": {
        "src": f"{ROLE}/templates/{{{{ item.value }}}}", "dest": "{{ out }}/{{ item.key }}", "mode": "0600"},
     "loop": "{{ templates | dict2items }}"}])


def render(d: Path, **variables) -> dict[str, str]:
    """The role's hardening templates rendered by ansible-playbook with ``variables``."""
    out = d / "rendered"
    out.mkdir(parents=True, exist_ok=True)
    variables = {"out": str(out), "templates": TEMPLATES, "inventory_hostname": "gw-01", **variables}
    r = R.run_playbook(d, RENDER, variables, name="render", timeout=None)
    assert r.returncode == 0, r.stdout + r.stderr
    return {k: (out / k).read_text() for k in TEMPLATES}


def _keygen(path: Path, kind: str, bits: int | None = None) -> Path:
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path), "-C", "llmcluster-test"]
    if bits:
        argv[4:4] = ["-b", str(bits)]
    subprocess.run(argv, check=True, capture_output=True)
    return path


# --------------------------------------------------------------------------- SSH

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed here (apt-get install openssh-client)")
    d = tmp_path_factory.mktemp("keys")
    out = {t: _keygen(d / f"host_{t}", t, 3072 if t == "rsa" else None) for t in ("ed25519", "ecdsa", "rsa")}
    out["client"] = _keygen(d / "client", "ed25519")
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    out["authorized_keys"] = d / "authorized_keys"
    return out


@pytest.fixture(scope="module")
def rendered(keys, tmp_path_factory) -> dict[str, str]:
    """The lab's case: Ansible logs in as root to the management address (here 127.0.0.1)."""
    return render(tmp_path_factory.mktemp("render"), ansible_user="root", ansible_host="127.0.0.1",
                  llmcluster_addresses={"mgmt": "127.0.0.1"}, common_sshd_host_keys=[str(keys["ed25519"])],
                  group_names=["gateway"])


class Sshd:
    """A real sshd on 127.0.0.1 with ``head`` (settings before the distribution's sshd_config)."""

    def __init__(self, d: Path, head: str, keys: dict[str, Path]):
        self.port = R.free_port()
        self.keys = keys
        self.config = d / "sshd_config"
        # The test's own settings come after the drop-in (first value wins) and before the
        # distribution's file: no pid file, keys from a temporary authorized_keys (StrictModes
        # would refuse it under the world-writable /tmp).
        self.config.write_text(f"{head}\nPidFile none\nStrictModes no\nAuthorizedKeysFile {keys['authorized_keys']}\n"
                               "Include /etc/ssh/sshd_config\n")
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config), "-p", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        R.wait_port(self.port, proc=self.proc)

    def effective(self) -> list[str]:
        return subprocess.run([SSHD, "-T", "-f", str(self.config), "-p", str(self.port), "-C",
                               "user=root,host=localhost,addr=127.0.0.1"], capture_output=True, text=True,
                              check=True).stdout.splitlines()

    def ssh(self, *args: str, env: dict | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.keys["client"]),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


def _need_sshd():
    if os.geteuid() != 0:
        pytest.skip("a real sshd (privilege separation, root logins) needs root")
    if not Path(SSHD).is_file() or not Path("/etc/ssh/sshd_config").is_file():
        pytest.skip("openssh-server is not installed here (apt-get install openssh-server)")
    if shutil.which("ssh") is None:
        pytest.skip("the ssh client is not installed here (apt-get install openssh-client)")
    # sshd's privilege separation directory (the service makes it; a container may lack it)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


@pytest.fixture(scope="module")
def hardened(rendered, keys, tmp_path_factory):
    _need_sshd()
    d = tmp_path_factory.mktemp("sshd-hardened")
    (d / "50-llmcluster.conf").write_text(rendered["sshd"])
    server = Sshd(d, f"Include {d / '50-llmcluster.conf'}", keys)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stock(keys, tmp_path_factory):
    """The distribution's configuration with the host keys Debian generates (rsa, ecdsa, ed25519)."""
    _need_sshd()
    d = tmp_path_factory.mktemp("sshd-stock")
    server = Sshd(d, "\n".join(f"HostKey {keys[t]}" for t in ("rsa", "ecdsa", "ed25519")), keys)
    yield server
    server.stop()


def test_sshd_dropin_renders_the_baseline(rendered, keys):
    lines = [line for line in rendered["sshd"].splitlines() if line and not line.startswith("#")]
    settings = dict(line.split(" ", 1) for line in lines)
    assert lines[0] == "ListenAddress 127.0.0.1"  # Ansible connects to the management address
    assert settings["HostKey"] == str(keys["ed25519"])
    assert settings["PermitRootLogin"] == "prohibit-password"  # the inventory's ssh user is root
    assert settings["KexAlgorithms"].split(",") == ["sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
                                                    "curve25519-sha256@libssh.org"]
    assert settings["MACs"].split(",") == ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                                           "umac-128-etm@openssh.com"]
    assert "ecdsa-sha2" not in settings["HostKeyAlgorithms"] and "ssh-rsa" not in settings["PubkeyAcceptedAlgorithms"]
    for key in ("AllowAgentForwarding", "AllowTcpForwarding", "AllowStreamLocalForwarding", "X11Forwarding",
                "PermitTunnel", "GatewayPorts", "PermitUserEnvironment", "PasswordAuthentication"):
        assert settings[key] == "no", key
    assert settings["DisableForwarding"] == "yes" and settings["LogLevel"] == "VERBOSE"
    assert (settings["MaxAuthTries"], settings["LoginGraceTime"]) == ("3", "30")
    assert len(lines) == len(settings), "a keyword appears twice"


def test_sshd_dropin_elsewhere_refuses_root_and_listens_everywhere(keys, tmp_path):
    """Production: Ansible logs in as ubuntu; a host reached at another address keeps listening everywhere."""
    out = render(tmp_path, ansible_user="ubuntu", ansible_host="198.51.100.7",
                 llmcluster_addresses={"mgmt": "10.42.0.11"}, common_sshd_host_keys=[str(keys["ed25519"])])
    assert "PermitRootLogin no" in out["sshd"].splitlines()
    assert "ListenAddress" not in out["sshd"]
    off = render(tmp_path / "off", ansible_user="ubuntu", ansible_host="10.42.0.11",
                 llmcluster_addresses={"mgmt": "10.42.0.11"}, common_sshd_listen_mgmt_only=False)
    assert "ListenAddress" not in off["sshd"]
    on = render(tmp_path / "on", ansible_user="ubuntu", ansible_host="10.42.0.11",
                llmcluster_addresses={"mgmt": "10.42.0.11"})
    assert "ListenAddress 10.42.0.11" in on["sshd"].splitlines()
    assert "After=network-online.target" in on["unit"] and "RestartPreventExitStatus=\n" in on["unit"]


def test_sshd_applies_every_setting(hardened, rendered):
    """What the role checks on each host after writing the drop-in (sshd -T), here for real."""
    effective = hardened.effective()
    aliases = _role_vars()["_common_sshd_aliases"]
    by_key: dict[str, list[str]] = {}
    for line in effective:
        key, _, value = line.partition(" ")
        by_key.setdefault(key, []).append(value)
    for line in rendered["sshd"].splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.split(" ", 1)
        if key == "ListenAddress":
            assert by_key["listenaddress"] == [f"127.0.0.1:{hardened.port}"]
        elif key == "HostKey":
            assert by_key["hostkey"] == [value]
        else:  # the role's comparison: lower case, and the old names sshd -T may print
            want = aliases.get(value.lower(), [value.lower()])
            have = [v.lower() for v in by_key.get(key.lower(), [])]
            assert len(have) == 1 and have[0] in want, f"{key}: sshd applies {have}, the drop-in says {value}"


def test_ssh_audit_rates_the_baseline_without_fail(hardened, rendered):
    if not ssh_audit.available():
        pytest.skip("ssh-audit is not installed here (apt-get install ssh-audit; scripts/setup.sh does)")
    audit = ssh_audit.run("127.0.0.1", hardened.port)
    print(audit.summary(), *audit.warnings, sep="\n")
    assert audit.fails == [], audit.text
    assert audit.unexplained_warnings() == [], audit.text
    settings = dict(line.split(" ", 1) for line in rendered["sshd"].splitlines() if line and not line.startswith("#"))
    offered = audit.offered
    assert [a for a in offered["kex"] if a != "kex-strict-s-v00@openssh.com"] == settings["KexAlgorithms"].split(",")
    assert offered["enc"] == settings["Ciphers"].split(",") and offered["mac"] == settings["MACs"].split(",")
    assert offered["key"] == ["ssh-ed25519"]


def test_ssh_audit_fails_the_stock_configuration(stock):
    """The control: the distribution's defaults (NIST curves, an ECDSA host key, encrypt-and-MAC)."""
    if not ssh_audit.available():
        pytest.skip("ssh-audit is not installed here (apt-get install ssh-audit; scripts/setup.sh does)")
    audit = ssh_audit.run("127.0.0.1", stock.port)
    print(audit.summary())
    failed = {a for _, a, _ in audit.fails}
    assert {"ecdh-sha2-nistp256", "ecdsa-sha2-nistp256"} <= failed, audit.text
    assert len(audit.unexplained_warnings()) > 0


def test_login_works_and_forwarding_is_refused(hardened, stock, tmp_path):
    for server in (hardened, stock):
        ok = server.ssh("root@127.0.0.1", "echo logged-in")
        assert ok.returncode == 0 and "logged-in" in ok.stdout, ok.stderr + server.stop()
    # TCP forwarding (a direct-tcpip channel, as -L opens per connection): to sshd itself
    target = f"127.0.0.1:{stock.port}"
    refused = hardened.ssh("-W", target, "root@127.0.0.1")
    assert refused.returncode == 255 and "stdio forwarding failed" in refused.stderr, refused.stderr
    allowed = stock.ssh("-W", target, "root@127.0.0.1", timeout=30)
    assert allowed.stdout.startswith("SSH-2.0-"), (allowed.returncode, allowed.stdout[:200], allowed.stderr)
    # Agent forwarding: the session sees no agent socket
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if agent_sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(agent_sock)}
        command = 'echo "agent=${SSH_AUTH_SOCK:-none}"'
        assert hardened.ssh("-A", "root@127.0.0.1", command, env=env).stdout.strip() == "agent=none"
        assert stock.ssh("-A", "root@127.0.0.1", command, env=env).stdout.strip() != "agent=none"
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_the_projects_paramiko_client_still_connects(hardened, keys):
    """llmcluster's own SSH client (paramiko: `validate --preflight` gathers host facts with it)
    negotiates the baseline: curve25519, AES-CTR/GCM, an encrypt-then-MAC MAC, the ed25519 host key."""
    paramiko = pytest.importorskip("paramiko")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=hardened.port, username="root", key_filename=str(keys["client"]),
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
    try:
        _, out, _ = client.exec_command("echo paramiko-ok", timeout=10)
        assert out.read().decode().strip() == "paramiko-ok"
        transport = client.get_transport()
        assert transport.host_key_type == "ssh-ed25519"
        assert transport.remote_mac.endswith("-etm@openssh.com"), transport.remote_mac
    finally:
        client.close()


# --------------------------------------------------------------------------- kernel hardening

def _role_vars() -> dict:
    return yaml.safe_load((ROLE / "vars" / "main.yml").read_text())


def _defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def test_sysctl_file_renders_rp_filter_and_the_baseline(tmp_path):
    strict = render(tmp_path / "strict", ansible_user="root")["sysctl"]
    lines = [line for line in strict.splitlines() if line and not line.startswith("#")]
    entries = dict(line.split(" = ") for line in lines)
    assert lines[:3] == ["net.ipv4.conf.all.rp_filter = 1", "net.ipv4.conf.default.rp_filter = 1",
                         "net.ipv4.conf.*.rp_filter = 1"]
    assert len(entries) == len(lines) == 3 + len(_defaults()["common_sysctl_hardening"])
    for key, value in {"kernel.kptr_restrict": "2", "kernel.dmesg_restrict": "1", "-kernel.yama.ptrace_scope": "1",
                       "net.ipv4.conf.*.accept_redirects": "0", "-net.ipv6.conf.*.accept_redirects": "0",
                       "net.ipv4.conf.all.log_martians": "1", "fs.protected_fifos": "2", "fs.suid_dumpable": "0",
                       "net.ipv4.tcp_syncookies": "1", "-net.core.bpf_jit_harden": "2"}.items():
        assert entries[key] == value, key
    assert "kexec_load_disabled" not in strict  # README: kdump needs kexec
    loose = render(tmp_path / "loose", ansible_user="root",
                   llmcluster_rp_filter={"mode": 2, "routed_sources": {"inference": ["10.0.0.0/12"]}})["sysctl"]
    assert "net.ipv4.conf.*.rp_filter = 2" in loose.splitlines()
    # sorts after the distribution's files, Debian's 99-protect-links.conf and 99-sysctl.conf included
    name = Path(_defaults()["common_sysctl_hardening_file"]).name
    assert sorted([name, "99-protect-links.conf", "99-sysctl.conf", "60-llmcluster.conf"])[-1] == name


def _netns_run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)


def _machine_values(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        for path in sorted(Path("/proc/sys").glob(key.lstrip("-").replace(".", "/"))):
            out[str(path)] = path.read_text().strip()
    return out


def test_namespace_hosts_apply_only_their_own_network_keys(tmp_path):
    """The lab's namespace hosts (common_sysctl_apply_netns): the role's check script and
    systemd-sysctl --prefix=net.ipv4.conf --prefix=net.ipv6.conf, run in a new network namespace,
    set that namespace's keys and leave this machine's alone."""
    systemd_sysctl = yaml.safe_load((ROLE / "vars" / "Debian.yml").read_text())["_common_systemd_sysctl"]
    if os.geteuid() != 0 or shutil.which("unshare") is None or not Path(systemd_sysctl).exists():
        pytest.skip("needs root, unshare (util-linux) and systemd-sysctl")
    if _netns_run("true").returncode != 0:
        pytest.skip("this machine cannot create network namespaces")
    text = render(tmp_path, ansible_user="root")["sysctl"]
    prefixes = _role_vars()["_common_sysctl_netns_prefixes"]
    assert prefixes == ["net.ipv4.conf", "net.ipv6.conf"]
    # Only per-namespace keys reach the namespace, whatever --prefix does: no kernel./fs./vm. line is
    # ever handed to systemd-sysctl here. One per-namespace key outside the prefixes proves the
    # prefixes filter (a new namespace has icmp_echo_ignore_broadcasts 1; the file says 0).
    lines = [line for line in text.splitlines() if line.lstrip("-").startswith(tuple(p + "." for p in prefixes))]
    assert len(lines) >= 15 and not any(line.lstrip("-").startswith(("kernel.", "fs.", "vm.")) for line in lines)
    netns_file = tmp_path / "netns.conf"
    netns_file.write_text("\n".join([*lines, "net.ipv4.icmp_echo_ignore_broadcasts = 0",
                                     "net.ipv4.conf.all.llmcluster_no_such_key = 1",
                                     "-net.ipv4.conf.all.llmcluster_optional_key = 1"]) + "\n")
    check = _role_vars()["_common_sysctl_check_script"]
    probe = shlex.join(["sh", "-c", check, "sh", str(netns_file), *prefixes])
    apply = shlex.join([systemd_sysctl, *(f"--prefix={p}" for p in prefixes), str(netns_file)])
    keys = [line.split(" = ")[0] for line in lines]
    before = _machine_values(keys)
    r = _netns_run(f"ip link set lo up; ip link add lltest0 type veth peer name lltest1; {probe}; echo ---; "
                   f"{apply}; echo ---; {probe}; echo ---; cat /proc/sys/net/ipv4/icmp_echo_ignore_broadcasts "
                   "/proc/sys/net/ipv4/conf/lltest0/accept_redirects /proc/sys/net/ipv4/conf/lltest0/rp_filter")
    first, applied, after, values = r.stdout.split("---\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "differs net/ipv4/conf/all/accept_redirects 1 0" in first  # a new namespace's default
    assert "differs net/ipv4/conf/lltest0/send_redirects 1 0" in first  # the glob reaches each interface
    assert "missing net.ipv4.conf.all.llmcluster_no_such_key" in first
    assert "llmcluster_optional_key" not in first  # "-key": may be absent
    assert after.splitlines() == ["missing net.ipv4.conf.all.llmcluster_no_such_key"], after
    assert values.split() == ["1", "0", "1"], values  # outside the prefixes: untouched
    assert _machine_values(keys) == before, "the machine's own values changed"


def test_check_script_reports_nothing_when_values_agree(tmp_path):
    """Outside any namespace, read only: the machine's own current values, as a file, agree."""
    check = _role_vars()["_common_sysctl_check_script"]
    f = tmp_path / "current.conf"
    f.write_text("net.ipv4.conf.all.accept_redirects = "
                 + Path("/proc/sys/net/ipv4/conf/all/accept_redirects").read_text().strip() + "\n"
                 "# a comment\n\n-kernel.llmcluster_no_such = 1\n")
    r = subprocess.run(["sh", "-c", check, "sh", str(f)], capture_output=True, text=True, check=True)
    assert r.stdout == ""
    r = subprocess.run(["sh", "-c", check, "sh", str(tmp_path / "absent.conf")], capture_output=True, text=True,
                       check=True)
    assert r.stdout == ""  # check mode on a fresh host: no file yet


# --------------------------------------------------------------------------- audit rules

AUDIT_FILTER_EXIT = 0x04
#: libaudit's parser state, reset before each rule as auditctl does.
_LIBAUDIT_GLOBALS = ("_audit_elf", "_audit_syscalladded", "_audit_archadded", "_audit_permadded", "_audit_exeadded",
                     "_audit_filterfsadded")
#: Where the rules run: b64 and b32 on both the x86 and the Arm GPU nodes.
MACHINES = {"b64": ("x86_64", "aarch64"), "b32": ("i386", "armv7l")}


def libaudit():
    name = ctypes.util.find_library("audit")
    if name is None:
        pytest.skip("libaudit is not installed here (Debian package libaudit1)")
    lib = ctypes.CDLL(name)
    lib.audit_rule_create_data.restype = ctypes.c_void_p
    lib.audit_rule_free_data.argtypes = [ctypes.c_void_p]
    lib.audit_rule_fieldpair_data.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int]
    lib.audit_rule_syscallbyname_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.audit_add_watch.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
    lib.audit_update_watch_perms.argtypes = [ctypes.c_void_p, ctypes.c_int]
    for f in ("audit_name_to_machine", "audit_name_to_flag", "audit_name_to_action"):
        getattr(lib, f).argtypes = [ctypes.c_char_p]
    lib.audit_name_to_syscall.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return lib


def check_audit_rules(text: str) -> list[str]:
    """Problems of a rules file, one per line, as auditctl's parser (libaudit) sees them; [] when it loads."""
    lib = libaudit()
    machines = {m: lib.audit_name_to_machine(m.encode()) for abi in MACHINES.values() for m in abi}
    problems: list[str] = []
    rules = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    enable = [n for n, line in rules if line.split()[0] == "-e"]
    if len(enable) != 1 or enable[0] != rules[-1][0]:
        problems.append(f"one -e, last: found at lines {enable}")
    for n, line in rules:
        where = f"line {n} {line!r}"
        words = shlex.split(line)
        if words[0] in ("-e", "-b", "-f", "-r", "--backlog_wait_time"):
            if len(words) != 2 or not words[1].isdigit() or (words[0] == "-e" and words[1] not in "012"):
                problems.append(f"{where}: {words[0]} takes one number")
            continue
        if words[0] in ("-D", "-c", "-i") and len(words) == 1:
            continue
        for g in _LIBAUDIT_GLOBALS:
            ctypes.c_uint.in_dll(lib, g).value = 0
        added = ctypes.c_uint.in_dll(lib, "_audit_syscalladded")
        rule = ctypes.c_void_p(lib.audit_rule_create_data())
        try:
            opts = list(zip(words[::2], words[1::2], strict=True))
        except ValueError:
            problems.append(f"{where}: an option without its value")
            continue
        key, abi, syscalls = None, None, []
        for opt, value in opts:
            if opt == "-w":
                added.value = 1  # auditctl's bookkeeping: a watch is a syscall rule
                if not value.startswith("/") or value.endswith("/") or "*" in value:
                    problems.append(f"{where}: a watch needs an absolute path without wildcards or a trailing /")
                elif lib.audit_add_watch(ctypes.byref(rule), value.encode()) != 0:
                    problems.append(f"{where}: libaudit refuses the watch {value}")
            elif opt == "-p":
                if not value or set(value) - set("rwxa"):
                    problems.append(f"{where}: permissions are letters of rwxa")
                else:
                    bits = sum({"r": 4, "w": 2, "x": 1, "a": 8}[c] for c in value)
                    if lib.audit_update_watch_perms(rule, bits) != 0:
                        problems.append(f"{where}: libaudit refuses the permissions {value}")
            elif opt == "-a":
                parts = value.split(",")
                if len(parts) != 2 or sorted(
                        (lib.audit_name_to_flag(p.encode()) >= 0, lib.audit_name_to_action(p.encode()) >= 0)
                        for p in parts) != [(False, True), (True, False)]:
                    problems.append(f"{where}: -a takes a list and an action (always,exit)")
            elif opt == "-F":
                if value.startswith("arch="):
                    abi = value.split("=", 1)[1]
                rc = lib.audit_rule_fieldpair_data(ctypes.byref(rule), ctypes.create_string_buffer(value.encode()),
                                                   AUDIT_FILTER_EXIT)
                if rc != 0:
                    problems.append(f"{where}: libaudit refuses the field {value} ({rc})")
            elif opt == "-S":
                for name in value.split(","):
                    syscalls.append(name)
                    if lib.audit_rule_syscallbyname_data(rule, name.encode()) != 0:
                        problems.append(f"{where}: no system call {name} for arch {abi or 'of this machine'}")
                added.value = 1  # as auditctl does after -S: a later arch= is refused
            elif opt == "-k":
                if not added.value:
                    problems.append(f"{where}: a key needs a watch or system call before it")
                key = value
            else:
                problems.append(f"{where}: option {opt} is not used by these rules")
        if key is None:
            problems.append(f"{where}: no key (-k): ausearch -k finds nothing")
        elif len(key) > 256:  # AUDIT_MAX_KEY_LEN
            problems.append(f"{where}: the key is longer than 256 characters")
        elif lib.audit_rule_fieldpair_data(ctypes.byref(rule), ctypes.create_string_buffer(f"key={key}".encode()),
                                           AUDIT_FILTER_EXIT) != 0:
            problems.append(f"{where}: libaudit refuses the key {key}")
        if syscalls:
            if abi not in MACHINES:
                problems.append(f"{where}: a syscall rule names its arch (b64 or b32) first")
            else:
                for machine in MACHINES[abi]:
                    missing = [s for s in syscalls if lib.audit_name_to_syscall(s.encode(), machines[machine]) < 0]
                    if missing:
                        problems.append(f"{where}: {machine} has no {', '.join(missing)}")
        lib.audit_rule_free_data(rule)
    return problems


def test_audit_rules_parse_with_libaudit(tmp_path):
    lib = libaudit()
    if lib.audit_name_to_syscall(b"execve", lib.audit_name_to_machine(b"aarch64")) < 0:
        pytest.skip("this libaudit has no aarch64 system call table")
    rendered = render(tmp_path / "gw", ansible_user="root", group_names=["gateway"])["audit"]
    assert check_audit_rules(rendered) == []
    keys = set(_role_vars()["_common_auditd_keys"])
    rules = [line for line in rendered.splitlines() if line.strip() and not line.startswith("#")]
    found = {w[w.index("-k") + 1] for w in map(shlex.split, rules) if "-k" in w}
    assert found == keys  # what the role checks in `auditctl -l` after loading
    for path in ("/etc/passwd", "/etc/shadow", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh/sshd_config.d",
                 "/etc/llmcluster", "/etc/haproxy"):
        assert f"-w {path} -p wa -k " in rendered, path
    assert rendered.rstrip().endswith("-e 1")
    assert "-F arch=b32 -S execve,execveat -F euid=0 -F auid!=unset -k root-commands" in rendered
    gpu = render(tmp_path / "gpu", ansible_user="root", group_names=["gpu"], common_auditd_immutable=True)["audit"]
    assert "/etc/haproxy" not in gpu and "-w /etc/llmcluster -p wa" in gpu
    assert gpu.rstrip().endswith("-e 2") and check_audit_rules(gpu) == []


@pytest.mark.parametrize(("rule", "problem"), [
    ("-a always,exit -F arch=b32 -S kexec_load -k kexec", "i386 has no kexec_load"),
    ("-a always,exit -S execve -F arch=b64 -k x", "refuses the field arch=b64"),
    ("-a always,exit -F arch=b64 -S no_such_call -k x", "no system call no_such_call"),
    ("-a always,exit -F arch=b64 -S execve -F nosuchfield=1 -k x", "refuses the field nosuchfield=1"),
    ("-a always,exti -F arch=b64 -S execve -k x", "-a takes a list and an action"),
    ("-a always,exit -F arch=b64 -S execve", "no key"),
    ("-w etc/passwd -p wa -k identity", "absolute path"),
    ("-w /etc/passwd -p wq -k identity", "letters of rwxa"),
    ("-w /etc/passwd -p wa -k", "without its value"),
])
def test_audit_rule_checker_rejects_bad_rules(rule, problem):
    problems = check_audit_rules(f"{rule}\n-e 1\n")
    assert any(problem in p for p in problems), problems
    assert check_audit_rules("-e 1\n-w /etc/passwd -p wa -k identity\n") == ["one -e, last: found at lines [1]"]


# --------------------------------------------------------------------------- preflight

PREFLIGHT = R.local_play("Run the common role's preflight", gather_subset=["min"], tasks=[
    {"name": "Preflight", "ansible.builtin.include_role": {"name": "common", "tasks_from": "preflight"}}])


def _preflight(tmp_path: Path, **variables) -> subprocess.CompletedProcess[str]:
    return R.run_playbook(tmp_path, PREFLIGHT, variables, name="preflight", timeout=None)


def test_preflight_refuses_what_would_lock_someone_out(keys, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the preflight reads who Ansible logs in as: run as root like the lab")
    ed = (Path(str(keys["client"]) + ".pub")).read_text().strip()
    ok = _preflight(tmp_path / "ok", ansible_user="root",
                    common_admin_users=[{"name": "alice", "ssh_keys": [ed, f'from="10.0.0.0/8" {ed}']}])
    assert ok.returncode == 0, ok.stdout[-3000:]
    # Ansible logs in as root here: PermitRootLogin no would lock it out after the reload
    root = _preflight(tmp_path / "root", ansible_user="ubuntu")
    assert root.returncode != 0 and "would refuse that login" in root.stdout, root.stdout[-3000:]
    ecdsa = Path(str(keys["ecdsa"]) + ".pub").read_text().strip()
    admin = _preflight(tmp_path / "admin", ansible_user="root",
                       common_admin_users=[{"name": "bob", "ssh_keys": [ecdsa]}])
    assert admin.returncode != 0 and "ecdsa-sha2-nistp256" in admin.stdout, admin.stdout[-3000:]
    derived = _preflight(tmp_path / "derived", ansible_user="root",
                         common_sshd_options={"ListenAddress": "0.0.0.0", "PasswordAuthentication": "no"})
    assert derived.returncode != 0 and "must not set" in derived.stdout, derived.stdout[-3000:]
    overlap = _preflight(tmp_path / "overlap", ansible_user="root",
                         common_sysctl_hardening={"vm.max_map_count": 1048576, "fs.suid_dumpable": 0})
    assert overlap.returncode != 0 and "vm.max_map_count" in overlap.stdout, overlap.stdout[-3000:]
    rp = _preflight(tmp_path / "rp", ansible_user="root", common_rp_filter=0)
    assert rp.returncode != 0 and "common_rp_filter" in rp.stdout, rp.stdout[-3000:]
