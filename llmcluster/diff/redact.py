"""Secrets never reach a diff report: redaction by type and by pattern.

* **By type** (:func:`is_secret_key`): a value whose key names a secret (``password``,
  ``token``, ``privateKey``, ``secret`` ...) and every value of a Pulumi ``secure:`` entry or of
  the ``llmcluster-switches:`` namespace is replaced by ``<redacted>``; Pulumi's own secret
  placeholders (``<secret>``) and Ansible's ``no_log`` censoring stay as they are.
* **By value**: the values collected by type (from the stack file, the inventory, role
  defaults) are replaced wherever else they show up, e.g. rendered into a file.
* **By pattern** (:meth:`Redactor.text`): PEM private-key blocks (also cut into diff lines),
  ``key = value`` / ``key: value`` pairs whose key names a secret, AWS access key ids, GitHub,
  Slack and JSON web tokens.

:class:`Redactor` is applied to every text that goes into a report *before* it is diffed and to
the finished report once more (:meth:`Redactor.walk`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
#: Keys whose values are secrets (the last key of a path). ``..._path``/``..._file`` name where a
#: secret lies, not the secret: they do not match.
SECRET_KEY = re.compile(
    r"(?i)(^|[_.-])(pass(word|wd|phrase)?|secret|secrets|token|api[_-]?key|access[_-]?key|secret[_-]?key|"
    r"private[_-]?key|privatekey|private[_-]?key[_-]?pem|privatekeypem|credentials?|auth[_-]?token|"
    r"client[_-]?secret|bearer)$")
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY|[A-Z0-9 ]*SECRET[A-Z0-9 ]*)-----")
_PEM_END = re.compile(r"-----END ([A-Z0-9 ]*PRIVATE KEY|[A-Z0-9 ]*SECRET[A-Z0-9 ]*)-----")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?-----END \1-----", re.S)
_PEM_BODY = re.compile(r"^([A-Za-z0-9+/=]*|[A-Za-z-]+: .*)$")
_PAIR = re.compile(
    r"(?i)((?<![/$:])\b[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credential)s?\b[\"']?\s*[:=]\s*)(\"[^\"\n]*\"|'[^'\n]*'|[^\s,;}\]\"']+)")
_TOKENS = (
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "<redacted:aws-access-key-id>"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), "<redacted:github-token>"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), "<redacted:github-token>"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), "<redacted:slack-token>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"), "<redacted:jwt>"),
    (re.compile(r"\bv1:[A-Za-z0-9+/=]{16,}"), "<redacted:pulumi-ciphertext>"),
)
#: Values this short are not collected as secrets by value (they would blank out common words).
MIN_SECRET_LEN = 6
#: Our own placeholders: never re-redacted, never collected.
_PLACEHOLDERS = re.compile(r"^<(redacted|secret|pem)[^>]*>$")


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.search(key))


class Redactor:
    """Redacts known secret values and secret-shaped text."""

    def __init__(self, values: Iterable[str] = ()):
        self.values: set[str] = set()
        self.add(values)

    def add(self, values: Iterable[Any]) -> None:
        for v in values:
            if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_LEN and not _PLACEHOLDERS.match(v.strip()):
                self.values.add(v.strip())
                # a multi-line secret (a key) is also caught line by line, as it shows in a line diff
                for line in v.strip().splitlines():
                    if len(line.strip()) >= 16:
                        self.values.add(line.strip())

    def collect(self, obj: Any, *, under_secret: bool = False) -> None:
        """Collect, by type, the secret values in ``obj`` (values of secret keys, ``secure:`` entries)."""
        if isinstance(obj, Mapping):
            if set(obj) == {"secure"}:
                self.add([str(obj["secure"])])
                return
            for k, v in obj.items():
                self.collect(v, under_secret=under_secret or is_secret_key(k) or str(k).startswith(
                    "llmcluster-switches:"))
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                self.collect(v, under_secret=under_secret)
        elif under_secret and obj is not None and not isinstance(obj, bool):
            self.add([str(obj)])

    def text(self, s: str) -> str:
        """``s`` with every secret removed."""
        if not s:
            return s
        for v in sorted(self.values, key=len, reverse=True):
            if v in s:
                s = s.replace(v, REDACTED)
        s = _PEM_BLOCK.sub(lambda m: f"<redacted:{m.group(1).lower().replace(' ', '-')}>", s)
        if _PEM_BEGIN.search(s) or _PEM_END.search(s):
            s = _lines_in_blocks(s)
        s = _PAIR.sub(lambda m: m.group(1) + (m.group(2) if _PLACEHOLDERS.match(m.group(2).strip("\"'"))
                                               else REDACTED), s)
        for pattern, repl in _TOKENS:
            s = pattern.sub(repl, s)
        return s

    def value(self, key: Any, value: Any) -> Any:
        """A value under ``key``: redacted whole when the key names a secret, else its text redacted."""
        if is_secret_key(key) and value not in (None, "", {}, []) and not isinstance(value, bool):
            if isinstance(value, str) and _PLACEHOLDERS.match(value):
                return value
            return REDACTED
        return self.walk(value)

    def walk(self, obj: Any) -> Any:
        """``obj`` (a report) with every string redacted and every secret key's value replaced."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {k: self.value(k, v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.walk(v) for v in obj]
        return obj


def _lines_in_blocks(s: str) -> str:
    """A private-key block cut into diff lines (``+``/``-`` prefixes, or a block without its END): every
    line from a BEGIN line to its END line is replaced."""
    out, inside = [], False
    for line in s.splitlines(keepends=True):
        if _PEM_BEGIN.search(line):
            inside = True
        elif inside and not _PEM_END.search(line):
            body = line.rstrip("\n")
            body = body[1:] if body[:1] in "+- " else body
            if not _PEM_BODY.match(body.strip()):
                inside = False  # the block was cut (a diff hunk's end): the next line is not key material
        if inside:
            prefix = line[:1] if line[:1] in "+- " and not line.startswith("-----") else ""
            out.append(f"{prefix}{REDACTED}\n" if line.endswith("\n") else f"{prefix}{REDACTED}")
            if _PEM_END.search(line):
                inside = False
            continue
        out.append(line)
    return "".join(out)
