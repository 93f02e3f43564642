#!/usr/bin/python
"""Stage model files from S3 (SigV4, no boto3) or from the Ceph model repository (rados), each
checked against the manifest's sha256 before it is renamed into the model folder."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_stage
short_description: Stage model files from s3:// or rados:// into a model folder, each verified before it is put in place
description:
  - Fetches the listed manifest files that are missing from O(dest) (with O(repair), also the regular files whose sha256
    differs) from an S3 bucket (GetObject signed with AWS Signature Version 4, standard library only) or from a RADOS
    pool (C(rados get)).
  - Each file is written to a temporary file in O(staging) (on the model's filesystem), hashed while it streams, and
    renamed into place only when its size and sha256 equal the manifest's; otherwise the temporary file is removed and
    the module fails naming the file and both digests.
  - A symlink or other non-regular entry at a manifest path is never replaced (the verifier names it).
  - Credentials (S3), in order, the module's options, the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN), the EC2 instance metadata service (IMDSv2). They are looked up only when a file is
    to be fetched.
  - Python >= 3.9, standard library only, on the node.
author: llmcluster maintainers
version_added: 1.3.0
options:
  source:
    description: C(s3://bucket[/prefix]) or C(rados://pool[/prefix]); the object of a file is C(prefix/<relative path>).
    type: str
    required: true
  dest:
    description: The model folder (its subfolders exist).
    type: path
    required: true
  staging:
    description: The folder of the temporary files, on the same filesystem as O(dest) (created 0700 when missing).
    type: path
    required: true
  files:
    description: Manifest entries to stage (C(path), C(size), C(sha256)).
    type: list
    elements: dict
    required: true
  repair:
    description: Fetch again a present regular file whose sha256 differs from the manifest's.
    type: bool
    default: false
  owner:
    description: Owner of the staged files.
    type: str
    default: root
  group:
    description: Group of the staged files.
    type: str
    default: root
  mode:
    description: Mode of the staged files (octal string).
    type: str
    default: "0640"
  s3_endpoint:
    description: An S3 endpoint URL (a VPC endpoint, an on-prem S3); empty, AWS's regional endpoint.
    type: str
    default: ""
  s3_region:
    description: The region the requests are signed for.
    type: str
    default: us-east-1
  s3_addressing:
    description: C(path) (endpoint/bucket/key), C(virtual) (bucket.endpoint/key) or C(auto) (virtual on AWS's own
      endpoint for a bucket name without dots, else path).
    type: str
    choices: [auto, path, virtual]
    default: auto
  s3_access_key:
    description: An access key id; empty, the environment or the instance profile.
    type: str
    default: ""
  s3_secret_key:
    description: The secret access key that goes with O(s3_access_key).
    type: str
    default: ""
  s3_session_token:
    description: A session token for temporary credentials.
    type: str
    default: ""
  ca_path:
    description: A CA bundle for the S3 endpoint's certificate; empty, the system's.
    type: path
    default: ""
  validate_certs:
    description: Check the S3 endpoint's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Timeout of one S3 request (seconds).
    type: int
    default: 60
  ceph_client:
    description: The cephx client id (C(rados --id)); its keyring is /etc/ceph/ceph.client.<id>.keyring.
    type: str
    default: models
  ceph_striper:
    description: Use the RADOS striper (C(rados --striper)); a plain RADOS object is limited to osd_max_object_size.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Stage the model from S3 through a VPC endpoint
  llmcluster.hosts.model_stage:
    source: s3://weights/deepseek-r1/main
    dest: /srv/models/deepseek-ai/DeepSeek-R1
    staging: /srv/models/.staging
    files: "{{ manifest.files }}"
    s3_endpoint: https://bucket.vpce-0abc.s3.us-east-1.vpce.amazonaws.com
    s3_region: us-east-1
  no_log: true
"""

RETURN = r"""
fetched:
  description: The relative paths staged (or, in check mode, that would be).
  type: list
  elements: str
  returned: always
bytes:
  description: Bytes staged.
  type: int
  returned: always
"""

import grp  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llmcluster.hosts.plugins.module_utils.model_source import parse_object_source  # noqa: E402
from ansible_collections.llmcluster.hosts.plugins.module_utils.s3_sigv4 import (  # noqa: E402
    S3Error,
    find_credentials,
    object_url,
    open_object,
    ssl_context,
)

CHUNK = 1 << 20


class StageError(Exception):
    pass


def parse_source(source: str) -> tuple[str, str, str]:
    try:
        return parse_object_source(source)
    except ValueError as e:
        raise StageError(f"source: {source}: {e}") from None


def rados_argv(rados: str, client: str, pool: str, striper: bool, *args: str) -> list[str]:
    return [rados, "--id", client, "-p", pool, *(["--striper"] if striper else []), *args]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Stager:
    def __init__(self, module: AnsibleModule):
        p = self.p = module.params
        self.module = module
        self.kind, self.name, self.prefix = parse_source(p["source"])
        self.shown = f"{self.kind}://{self.name}" + (f"/{self.prefix}" if self.prefix else "")
        self.creds = None
        self.rados = module.get_bin_path("rados", required=True) if self.kind == "rados" else None

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def where(self, rel: str) -> str:
        return f"{self.shown}/{rel}"

    def chunks(self, rel: str):
        """The object's bytes, in chunks; a failure raises StageError naming the object."""
        if self.kind == "s3":
            p = self.p
            if self.creds is None:
                try:
                    self.creds = find_credentials(p["s3_access_key"], p["s3_secret_key"], p["s3_session_token"])
                except S3Error as e:
                    raise StageError(f"{self.shown}: {e}") from None
            url = object_url(self.name, self.key(rel), region=p["s3_region"], endpoint=p["s3_endpoint"],
                             addressing=p["s3_addressing"])
            ctx = ssl_context(p["ca_path"], p["validate_certs"]) if url.startswith("https:") else None
            try:
                resp = open_object(url, self.creds, region=p["s3_region"], timeout=p["timeout"], context=ctx)
            except S3Error as e:
                raise StageError(f"{self.where(rel)}: {e}") from None
            with resp:
                try:
                    yield from iter(lambda: resp.read(CHUNK), b"")
                except OSError as e:
                    raise StageError(f"{self.where(rel)}: the transfer broke off: {e}") from None
            return
        argv = rados_argv(self.rados, self.p["ceph_client"], self.name, self.p["ceph_striper"],
                          "get", self.key(rel), "-")
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
            try:
                yield from iter(lambda: proc.stdout.read(CHUNK), b"")
            finally:
                proc.stdout.close()
                rc = proc.wait()
            if rc != 0:
                err.seek(0)
                lines = err.read().decode("utf-8", "replace").strip().splitlines()
                raise StageError(f"{self.where(rel)}: rados get exited {rc}: {lines[-1] if lines else ''}")

    def stage(self, entry: dict, uid: int, gid: int, mode: int) -> int:
        rel, want, size = entry["path"], entry["sha256"], int(entry["size"])
        dest = os.path.join(self.p["dest"], rel)
        fd, tmp = tempfile.mkstemp(dir=self.p["staging"], prefix=".stage-")
        try:
            h, n = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                for block in self.chunks(rel):
                    n += len(block)
                    if n > size:
                        raise StageError(f"{rel}: {self.where(rel)} is larger than the manifest's {size} bytes: "
                                         "refused, nothing was put in place")
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            got = h.hexdigest()
            if n != size or got != want:
                raise StageError(f"{rel}: sha256 {got} ({n} bytes) from {self.where(rel)} is not the manifest's "
                                 f"{want} ({size} bytes): refused, nothing was put in place")
            os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            os.rename(tmp, dest)
            tmp = None
            return n
        finally:
            if tmp is not None and os.path.lexists(tmp):
                os.unlink(tmp)


def wanted(dest: str, files: list, repair: bool) -> list:
    todo = []
    for entry in files:
        path = os.path.join(dest, entry["path"])
        if os.path.lexists(path):
            if os.path.islink(path) or not os.path.isfile(path) or not repair:
                continue  # present (the verification judges it) or not regular (never replaced)
            if file_sha256(path) == entry["sha256"]:
                continue
        todo.append(entry)
    return todo


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            staging=dict(type="path", required=True),
            files=dict(type="list", elements="dict", required=True),
            repair=dict(type="bool", default=False),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
            mode=dict(type="str", default="0640"),
            s3_endpoint=dict(type="str", default=""),
            s3_region=dict(type="str", default="us-east-1"),
            s3_addressing=dict(type="str", default="auto", choices=["auto", "path", "virtual"]),
            s3_access_key=dict(type="str", default="", no_log=True),
            s3_secret_key=dict(type="str", default="", no_log=True),
            s3_session_token=dict(type="str", default="", no_log=True),
            ca_path=dict(type="path", default=""),
            validate_certs=dict(type="bool", default=True),
            timeout=dict(type="int", default=60),
            ceph_client=dict(type="str", default="models"),
            ceph_striper=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for i, entry in enumerate(p["files"]):
        if not isinstance(entry.get("path"), str) or not re.match(r"^[0-9a-f]{64}$", str(entry.get("sha256", ""))) \
                or not isinstance(entry.get("size"), int):
            module.fail_json(msg=f"files[{i}]: needs path, size (an integer) and sha256 (64 hex digits)")
    try:
        stager = Stager(module)
    except StageError as e:
        module.fail_json(msg=str(e))
    todo = wanted(p["dest"], p["files"], p["repair"])
    result = {"changed": bool(todo), "fetched": [e["path"] for e in todo], "bytes": 0, "source": stager.shown,
              "staged_ok": True}
    if module.check_mode or not todo:
        module.exit_json(**result)
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid
        gid = grp.getgrnam(p["group"]).gr_gid
    except KeyError as e:
        module.fail_json(msg=f"owner/group: {e.args[0]}", **{**result, "staged_ok": False})
    if not os.path.isdir(p["staging"]):
        os.makedirs(p["staging"], mode=0o700)
    t0, done = time.monotonic(), []
    for entry in todo:
        try:
            result["bytes"] += stager.stage(entry, uid, gid, int(p["mode"], 8))
        except StageError as e:
            module.fail_json(msg=str(e), **{**result, "fetched": done, "staged_ok": False})
        except OSError as e:
            module.fail_json(msg=f"{entry['path']}: {e.strerror or e}",
                             **{**result, "fetched": done, "staged_ok": False})
        done.append(entry["path"])
    result["seconds"] = round(time.monotonic() - t0, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
