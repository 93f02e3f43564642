"""Object-store sources of the model store: ``s3://bucket[/prefix]`` and ``rados://pool[/prefix]``
(standard library only). One parser for the model_store role's preflight (the ``model_source_problem``
filter) and for the ``model_stage`` / ``model_publish`` modules on the node."""

from __future__ import annotations

import re

#: S3 general purpose bucket names: 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with
#: a letter or digit, no '..' (nor '.-' / '-.', which virtual-hosted style cannot address), not an IPv4 address.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Ceph pool names as llmcluster plans them: letters, digits, '_', '.', '-', not starting with '.'.
POOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SCHEMES = ("s3", "rados")


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or None."""
    if not BUCKET_RE.match(bucket):
        return ("an S3 bucket name is 3 to 63 characters of a-z, 0-9, '.' and '-', starting and ending with a "
                "letter or digit")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "an S3 bucket name has no '..', '.-' or '-.'"
    if re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        return "an S3 bucket name is not an IP address"
    return None


def parse_object_source(source: str, schemes=SCHEMES) -> tuple[str, str, str]:
    """(scheme, bucket or pool, prefix without slashes at its ends); ValueError says what is wrong."""
    m = re.match(r"^([a-z0-9]+)://([^/]*)(/.*)?$", source)
    if not m or m.group(1) not in schemes:
        raise ValueError("not " + " or ".join(f"{s}://{'bucket' if s == 's3' else 'pool'}[/prefix]" for s in schemes))
    scheme, name, rest = m.group(1), m.group(2), (m.group(3) or "")
    rest = rest[1:] if rest.startswith("/") else rest
    rest = rest[:-1] if rest.endswith("/") else rest
    if scheme == "s3":
        problem = bucket_problem(name)
        if problem:
            raise ValueError(f"bucket {name!r}: {problem}")
    elif not POOL_RE.match(name):
        raise ValueError(f"pool {name!r}: a Ceph pool name is letters, digits, '_', '.' and '-', not starting with '.'")
    if rest:
        for part in rest.split("/"):
            if part in ("", ".", ".."):
                raise ValueError(f"prefix {rest!r}: an empty, '.' or '..' component")
            if re.search(r"[\x00-\x1f\x7f\\]", part):
                raise ValueError(f"prefix {rest!r}: a control character or backslash")
    return scheme, name, rest


def model_source_problem(source: str, schemes=SCHEMES) -> str:
    """'' when ``source`` parses, else what is wrong (for an assert's fail_msg)."""
    try:
        parse_object_source(str(source), tuple(schemes))
    except ValueError as e:
        return str(e)
    return ""
