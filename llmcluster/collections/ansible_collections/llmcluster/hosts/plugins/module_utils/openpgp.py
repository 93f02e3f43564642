"""OpenPGP public keys: the primary-key fingerprints of a key file, without ``gpg`` (pure functions,
standard library only), and the same read from ``gpg --with-colons`` where ``gpg`` is installed.

Parses the transferable public keys of RFC 4880 / RFC 9580, ASCII-armoured (every ``PUBLIC KEY
BLOCK`` of the file: a file with two blocks is two sets of keys to apt, both are reported) or
binary, one or several keys. A v4 fingerprint is the SHA-1 of ``0x99 || length (2 bytes) ||
public-key packet body``, a v5/v6 fingerprint the SHA-256 of ``0x9a|0x9b || length (4 bytes) ||
body``. Only primary keys (packet tag 6) are reported, not sub-keys (tag 14): the same as gpg's
``fpr`` record after each ``pub``. Anything that is not a key is an error, never a fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from ._text import lines

_ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----[^\n]*\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S)


class KeyFormatError(ValueError):
    """Not an OpenPGP public key."""


def dearmor(data: bytes) -> tuple[bytes, bool]:
    """(the binary packets, was it armoured): every armoured block decoded and concatenated; a
    binary key (its first byte a packet tag) as is."""
    text = data.decode("ascii", errors="replace").replace("\r", "")
    blocks = list(_ARMOR.finditer(text))
    if not blocks:
        if "-----BEGIN PGP PUBLIC KEY BLOCK" in text:
            raise KeyFormatError("no 'END PGP PUBLIC KEY BLOCK' armour")
        if data[:1] and data[0] & 0x80:
            return data, False
        raise KeyFormatError("no OpenPGP public key block")
    out = b""
    for m in blocks:
        body = m.group("body").split("\n")
        # Armour headers ("Version: ...", "Comment: ...") end at the first blank line.
        if "" in [line.strip() for line in body]:
            blank = [line.strip() for line in body].index("")
            if all(":" in line for line in body[:blank]):
                body = body[blank + 1:]
        payload = "".join(line.strip() for line in body if line.strip() and not line.strip().startswith("="))
        try:
            out += base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise KeyFormatError(f"armoured key is not valid base64: {e}") from e
    return out, True


def packets(data: bytes):
    """(tag, body) of every packet (old and new packet formats)."""
    i, n = 0, len(data)
    while i < n:
        ctb = data[i]
        if not ctb & 0x80:
            raise KeyFormatError(f"not an OpenPGP packet at offset {i}")
        i += 1
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            if i >= n:
                raise KeyFormatError("truncated packet header")
            o = data[i]
            if o < 192:
                length, i = o, i + 1
            elif o < 224:
                if i + 1 >= n:
                    raise KeyFormatError("truncated packet header")
                length, i = ((o - 192) << 8) + data[i + 1] + 192, i + 2
            elif o == 255:
                if i + 5 > n:
                    raise KeyFormatError("truncated packet header")
                length, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
            else:
                raise KeyFormatError("partial body lengths do not occur in keys")
        else:  # old format
            tag, ltype = (ctb >> 2) & 0x0F, ctb & 0x03
            if ltype == 3:  # indeterminate: the rest of the data
                length = n - i
            else:
                size = (1, 2, 4)[ltype]
                if i + size > n:
                    raise KeyFormatError("truncated packet header")
                length, i = int.from_bytes(data[i:i + size], "big"), i + size
        if i + length > n:
            raise KeyFormatError("truncated packet")
        yield tag, data[i:i + length]
        i += length


def fingerprint(body: bytes) -> str:
    """The fingerprint of a public-key packet body (upper-case hex)."""
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise KeyFormatError(f"unsupported OpenPGP key version {version}")


def openpgp_key_info(content: Any, encoding: str = "base64") -> dict[str, Any]:
    """``{armored, fingerprints, error}`` of a public key file: ``content`` as ``slurp`` returns it
    (``encoding="base64"``), or the file itself (``"text"``/``"raw"``: str or bytes).
    ``fingerprints`` lists the primary keys (upper-case hex), ``[]`` with ``error`` saying what is
    wrong when it is not an OpenPGP public key. Never raises."""
    try:
        if isinstance(content, bytes):
            raw = content
        else:
            raw = str(content or "").encode("ascii" if encoding == "base64" else "latin-1", errors="replace")
        if encoding == "base64":
            raw = base64.b64decode(raw)
        data, armored = dearmor(raw)
        fingerprints = [fingerprint(body) for tag, body in packets(data) if tag == 6]
        if not fingerprints:
            raise KeyFormatError("no public key packet")
        return {"armored": armored, "fingerprints": fingerprints, "error": ""}
    except (KeyFormatError, binascii.Error, ValueError, IndexError) as e:
        return {"armored": False, "fingerprints": [], "error": str(e) or type(e).__name__}


def openpgp_fingerprints(content: Any, encoding: str = "base64") -> list[str]:
    """The primary-key fingerprints of a key file (:func:`openpgp_key_info`); ``[]`` when it is
    not an OpenPGP public key (the caller then fails closed)."""
    return openpgp_key_info(content, encoding)["fingerprints"]


def openpgp_normalize_fingerprint(value: Any) -> str:
    """A fingerprint as the parsers print it: ``c95b 321b ... ecb0`` -> ``C95B321B...ECB0``."""
    return re.sub(r"[\s:]", "", str(value or "")).upper()


def gpg_colon_fingerprints(output: Any) -> list[str]:
    """``gpg --with-colons --show-keys`` (or ``--list-keys``): the ``fpr`` record that follows each
    ``pub`` record (primary keys; the sub-keys' ``fpr`` follow ``sub``), upper-case."""
    out: list[str] = []
    prev = ""
    for line in lines(output):
        f = line.split(":")
        if f[0] == "fpr" and prev == "pub" and len(f) > 9 and f[9]:
            out.append(f[9].upper())
        prev = f[0]
    return out
