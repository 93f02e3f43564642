"""S3 GetObject for the GPU nodes, standard library only (Python >= 3.9): AWS Signature Version 4,
credentials from the caller, the environment or the EC2 instance metadata service (IMDSv2).

Used by the llmcluster.hosts collection's ``model_stage`` module (the ``model_store`` role's
``s3://`` source): the nodes have no boto3. What it does, and no more:

* :func:`sign` -- the SigV4 ``Authorization`` header of one request (canonical request, string to
  sign, the derived signing key ``AWS4<secret> -> date -> region -> service -> aws4_request``);
  S3 style: the path is URI-encoded once, never normalised;
* :func:`object_url` -- path-style (``https://endpoint/bucket/key``) or virtual-hosted style
  (``https://bucket.endpoint/key``) addressing, with an endpoint override (VPC endpoints, on-prem S3);
* :func:`find_credentials` -- the first of: explicit keys, ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` in the environment, the instance profile through
  IMDSv2 (a ``PUT /latest/api/token`` then ``/latest/meta-data/iam/security-credentials/<role>``);
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` moves the metadata service, ``AWS_EC2_METADATA_DISABLED=true``
  turns it off (the names botocore reads);
* :func:`open_object` -- a signed GET, the response to stream; an error response becomes an
  :class:`S3Error` with the HTTP status and S3's error code and message, never a key.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"
IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_TOKEN_TTL_S = "21600"


class S3Error(Exception):
    """A failed S3 or metadata request; its text names the object, never a credential."""


def quote(text: str, safe: str = "-_.~") -> str:
    """RFC 3986 percent-encoding as SigV4 wants it (unreserved characters kept, UTF-8 bytes)."""
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(pairs))


def sign(method: str, url: str, headers: dict, *, region: str, service: str, access_key: str, secret_key: str,
         amz_date: str, payload_sha256: str = EMPTY_SHA256) -> dict:
    """``headers`` plus ``host`` (when absent), ``x-amz-date`` and ``Authorization``, every header
    signed. ``url``'s path must already be encoded as it goes on the wire (S3: once)."""
    parts = urllib.parse.urlsplit(url)
    out = {k.lower(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    out.setdefault("host", parts.netloc)
    out["x-amz-date"] = amz_date
    names = sorted(out)
    canonical = "\n".join([method, parts.path or "/", canonical_query(parts.query),
                           "".join(f"{n}:{out[n]}\n" for n in names), ";".join(names), payload_sha256])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    signature = hmac.new(signing_key(secret_key, amz_date[:8], region, service), to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    out["Authorization"] = (f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                            f"Signature={signature}")
    return out


def object_url(bucket: str, key: str, *, region: str, endpoint: str = "", addressing: str = "auto") -> str:
    """The object's URL. ``auto``: virtual-hosted style on AWS's own endpoint (a bucket name without
    dots), path style with an endpoint override or a dotted bucket name."""
    if endpoint:
        base = urllib.parse.urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        scheme, host, root = base.scheme, base.netloc, base.path.rstrip("/")
    else:
        scheme, host, root = "https", f"s3.{region}.amazonaws.com", ""
    virtual = addressing == "virtual" or (addressing == "auto" and not endpoint and "." not in bucket)
    path = quote(key, safe="-_.~/")
    if virtual:
        return f"{scheme}://{bucket}.{host}{root}/{path}"
    return f"{scheme}://{host}{root}/{bucket}/{path}"


def ssl_context(ca_path: str = "", validate: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_path or None)
    if not validate:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- credentials


class Credentials:
    """Keys and where they came from (``origin`` is shown in errors; the keys never are)."""

    def __init__(self, access_key: str, secret_key: str, token: str = "", origin: str = ""):
        self.access_key, self.secret_key, self.token, self.origin = access_key, secret_key, token or "", origin

    def __repr__(self) -> str:
        return f"Credentials(origin={self.origin!r})"


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    # The metadata service is link-local: never through a proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def imds_credentials(endpoint: str = "", timeout: float = 2.0) -> Credentials:
    """The instance profile's temporary credentials through IMDSv2 (session token first)."""
    base = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_ENDPOINT).rstrip("/")
    opener = _no_proxy_opener()
    try:
        req = urllib.request.Request(base + "/latest/api/token", method="PUT", data=b"",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": IMDS_TOKEN_TTL_S})
        with opener.open(req, timeout=timeout) as r:
            token = r.read().decode().strip()
        hdr = {"X-aws-ec2-metadata-token": token}
        path = base + "/latest/meta-data/iam/security-credentials/"
        with opener.open(urllib.request.Request(path, headers=hdr), timeout=timeout) as r:
            roles = [x.strip() for x in r.read().decode().splitlines() if x.strip()]
        if not roles:
            raise S3Error(f"the instance metadata service at {base} lists no instance profile role")
        with opener.open(urllib.request.Request(path + quote(roles[0]), headers=hdr), timeout=timeout) as r:
            doc = json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        raise S3Error(f"the instance metadata service at {base} answered HTTP {e.code} (IMDSv2)") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise S3Error(f"the instance metadata service at {base} is not reachable: {reason}") from None
    if doc.get("Code", "Success") != "Success" or not doc.get("AccessKeyId") or not doc.get("SecretAccessKey"):
        raise S3Error(f"the instance metadata service at {base} gave no credentials for role {roles[0]}")
    return Credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token", ""),
                       f"the instance profile role {roles[0]} (IMDSv2)")


def find_credentials(access_key: str = "", secret_key: str = "", token: str = "", *, environ=None,
                     imds_endpoint: str = "") -> Credentials:
    """Explicit keys, then the environment, then IMDSv2. A half-given pair is an error."""
    env = os.environ if environ is None else environ
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise S3Error("model_store_s3_access_key and model_store_s3_secret_key go together: one of them is empty")
        return Credentials(access_key, secret_key, token, "the role variables model_store_s3_access_key/secret_key")
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY"):
        if not (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")):
            raise S3Error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: one of them is unset")
        return Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN", ""),
                           "the environment (AWS_ACCESS_KEY_ID)")
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        raise S3Error("no credentials: no role variables, none in the environment, and AWS_EC2_METADATA_DISABLED=true")
    return imds_credentials(imds_endpoint or env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", ""))


# --------------------------------------------------------------------------- GetObject


def _error_text(body: bytes) -> str:
    text = body[:4096].decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]*)</Code>", text)
    msg = re.search(r"<Message>([^<]*)</Message>", text)
    return " ".join(x for x in ((code.group(1) if code else ""), (msg.group(1) if msg else "")) if x)


def open_object(url: str, creds: Credentials, *, region: str, timeout: float = 60, context=None, now=None):
    """A signed GetObject; the open response (read it in chunks). Errors: :class:`S3Error`."""
    # datetime.UTC is Python 3.11; the nodes run 3.9+.
    utc = datetime.timezone.utc  # noqa: UP017
    amz_date = (now or datetime.datetime.now(utc)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"x-amz-content-sha256": EMPTY_SHA256}
    if creds.token:
        headers["x-amz-security-token"] = creds.token
    signed = sign("GET", url, headers, region=region, service="s3", access_key=creds.access_key,
                  secret_key=creds.secret_key, amz_date=amz_date)
    req = urllib.request.Request(url, headers=signed, method="GET")
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)) if context else None
    try:
        return (opener.open if opener else urllib.request.urlopen)(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        detail = _error_text(e.read() or b"")
        raise S3Error(f"HTTP {e.code}{(' ' + detail) if detail else ''} (credentials from {creds.origin})") from None
    except (urllib.error.URLError, OSError) as e:
        raise S3Error(f"not reachable: {getattr(e, 'reason', e)}") from None
