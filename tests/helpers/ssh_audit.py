"""ssh-audit (the Debian package, 2.5) against one SSH server, as findings to assert on.

ssh-audit 2.5's JSON (``-j``) lists the algorithms a server offers but not its verdicts, so
the verdicts come from the batch text (``-b -n``): one line per finding,
``(kex) ecdh-sha2-nistp256 -- [fail] using weak elliptic curves``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field

_FINDING = re.compile(r"^\((?P<section>gen|kex|key|enc|mac|fin|rec|cve|nfo)\) (?P<algorithm>\S+)(?: \([^)]*\))?"
                      r" -- \[(?P<level>fail|warn|info)\] (?P<text>.*)$")

#: Warnings the llmcluster sshd baseline keeps, with the reason (roles/common/README.md, "SSH").
ACCEPTED_WARNINGS: dict[tuple[str, str], str] = {
    ("sntrup761x25519-sha512@openssh.com", "using experimental algorithm"):
        "the post-quantum hybrid key exchange, OpenSSH's default since 9.0; ssh-audit 2.5 predates that",
    ("kex-strict-s-v00@openssh.com", "unknown algorithm"):
        "not an algorithm: the strict key exchange marker against Terrapin (CVE-2023-48795), which sshd adds "
        "itself; ssh-audit 2.5 predates it",
}


@dataclass
class Audit:
    target: str
    findings: list[tuple[str, str, str, str]]  # (section, algorithm, level, text)
    offered: dict[str, list[str]] = field(default_factory=dict)  # section -> algorithms (JSON)
    text: str = ""

    def of(self, level: str) -> list[tuple[str, str, str]]:
        return [(s, a, t) for s, a, lv, t in self.findings if lv == level]

    @property
    def fails(self) -> list[tuple[str, str, str]]:
        return self.of("fail")

    @property
    def warnings(self) -> list[tuple[str, str, str]]:
        return self.of("warn")

    def unexplained_warnings(self) -> list[tuple[str, str, str]]:
        return [w for w in self.warnings if (w[1], w[2]) not in ACCEPTED_WARNINGS]

    def summary(self) -> str:
        return f"ssh-audit {self.target}: {len(self.fails)} fail, {len(self.warnings)} warn"


def available() -> bool:
    return shutil.which("ssh-audit") is not None


def run(host: str, port: int = 22, timeout: float = 60) -> Audit:
    """Audit ``host:port``: the verdicts (batch text) and the offered algorithms (JSON)."""
    target = f"{host}:{port}"
    text = subprocess.run(["ssh-audit", "-b", "-n", target], capture_output=True, text=True, timeout=timeout,
                          check=False).stdout
    findings = [(m["section"], m["algorithm"], m["level"], m["text"].strip())
                for m in map(_FINDING.match, text.splitlines()) if m]
    assert "(gen) banner:" in text, f"ssh-audit did not reach {target}:\n{text[-2000:]}"
    raw = subprocess.run(["ssh-audit", "-j", target], capture_output=True, text=True, timeout=timeout,
                         check=False).stdout
    doc = json.loads(raw)
    offered = {s: [e["algorithm"] if isinstance(e, dict) else e for e in doc.get(s, [])]
               for s in ("kex", "key", "enc", "mac")}
    return Audit(target, findings, offered, text)
