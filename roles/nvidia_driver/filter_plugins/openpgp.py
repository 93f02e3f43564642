"""``openpgp_fingerprints``: the primary-key fingerprints of an OpenPGP public key file.

Used by the nvidia_driver role to check the repository key where ``gpg`` is not installed
(minimal Debian images have ``gpgv`` only). Parses the transferable public keys of RFC 4880 /
RFC 9580 (ASCII-armoured or binary, one or several keys): a v4 fingerprint is the SHA-1 of
``0x99 || length (2 bytes) || public-key packet body``, a v5/v6 fingerprint the SHA-256 of
``0x9a|0x9b || length (4 bytes) || body``. Only primary keys (packet tag 6) are reported,
sub-keys (tag 14) are not: the same as gpg's ``fpr`` record after each ``pub``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

ARMOR = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(?P<body>.*?)-----END PGP PUBLIC KEY BLOCK-----", re.S)


class KeyFormatError(ValueError):
    """Not an OpenPGP public key (the role reports it as a fingerprint mismatch)."""


def dearmor(data: bytes) -> bytes:
    """The binary packets of an ASCII-armoured key (every block, concatenated); binary input as is."""
    text = data.decode("ascii", errors="replace")
    blocks = list(ARMOR.finditer(text))
    if not blocks:
        if data[:1] and data[0] & 0x80:
            return data
        raise KeyFormatError("no OpenPGP public key block")
    out = b""
    for m in blocks:
        lines = [line.strip() for line in m.group("body").replace("\r", "").split("\n")]
        # Armour headers ("Version: ...") end at the first empty line.
        if "" in lines:
            head = lines[:lines.index("")]
            if all(":" in line for line in head):
                lines = lines[len(head) + 1:]
        payload = "".join(line.strip() for line in lines if line.strip() and not line.startswith("="))
        try:
            out += base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise KeyFormatError(f"bad armour: {e}") from e
    return out


def packets(data: bytes):
    """(tag, body) of every packet; old and new packet formats."""
    i, n = 0, len(data)
    while i < n:
        ctb = data[i]
        if not ctb & 0x80:
            raise KeyFormatError(f"not an OpenPGP packet at offset {i}")
        if ctb & 0x40:  # new format
            tag = ctb & 0x3F
            i += 1
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
                length, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
            else:
                raise KeyFormatError("partial body lengths do not occur in keys")
        else:  # old format
            tag, ltype = (ctb >> 2) & 0x0F, ctb & 0x03
            i += 1
            if ltype == 3:
                raise KeyFormatError("indeterminate lengths do not occur in keys")
            size = (1, 2, 4)[ltype]
            length, i = int.from_bytes(data[i:i + size], "big"), i + size
        if i + length > n:
            raise KeyFormatError("truncated packet")
        yield tag, data[i:i + length]
        i += length


def fingerprint(body: bytes) -> str:
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        return hashlib.sha256(prefix + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise KeyFormatError(f"unsupported key version {version}")


def openpgp_fingerprints(content: str | bytes, encoding: str = "base64") -> list[str]:
    """Primary-key fingerprints of a key file: ``content`` as slurp returns it (base64) or raw.
    ``[]`` when it is not an OpenPGP public key (the role then fails closed)."""
    data = content.encode() if isinstance(content, str) else content
    try:
        if encoding == "base64":
            data = base64.b64decode(data)
        return [fingerprint(body) for tag, body in packets(dearmor(data)) if tag == 6]
    except (KeyFormatError, binascii.Error, ValueError, IndexError):
        return []


class FilterModule:
    def filters(self):
        return {"openpgp_fingerprints": openpgp_fingerprints}
