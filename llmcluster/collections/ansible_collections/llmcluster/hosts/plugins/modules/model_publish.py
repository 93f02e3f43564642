#!/usr/bin/python
"""Publish a verified model folder into the Ceph model repository (rados put of what is absent or
of another size)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_publish
short_description: Publish a verified model folder into a RADOS pool (the Ceph model repository)
description:
  - One C(rados ls) of the pool says which objects exist; C(rados stat) gives the size of those that do. Every manifest
    file whose object C(prefix/<relative path>) is absent or has another size is put with C(rados put) (an object of
    another size is removed first), and its size is checked with C(rados stat) afterwards. A second run puts nothing.
  - Run it only after the folder was verified against the manifest (role model_store does): the module sends the
    folder's bytes, it does not hash them.
  - The node's cephx key (C(--id), /etc/ceph/ceph.client.<id>.keyring) needs C(osd allow rw pool=<pool>).
author: llmcluster maintainers
version_added: 1.3.0
options:
  target:
    description: C(rados://pool[/prefix]).
    type: str
    required: true
  src:
    description: The verified model folder.
    type: path
    required: true
  files:
    description: The manifest's entries (C(path), C(size)).
    type: list
    elements: dict
    required: true
  ceph_client:
    description: The cephx client id (C(rados --id)).
    type: str
    default: models
  ceph_striper:
    description: Use the RADOS striper (C(rados --striper)); needed for files above osd_max_object_size.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Publish the model into the Ceph model repository
  llmcluster.hosts.model_publish:
    target: rados://models/deepseek-r1/main
    src: /srv/models/deepseek-ai/DeepSeek-R1
    files: "{{ manifest.files }}"
"""

RETURN = r"""
published:
  description: The relative paths put (or, in check mode, that would be).
  type: list
  elements: str
  returned: always
"""

import os  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.llmcluster.hosts.plugins.module_utils.model_source import parse_object_source  # noqa: E402
SIZE_RE = re.compile(r"\bsize (\d+)\s*$")


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            target=dict(type="str", required=True),
            src=dict(type="path", required=True),
            files=dict(type="list", elements="dict", required=True),
            ceph_client=dict(type="str", default="models"),
            ceph_striper=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        _, pool, prefix = parse_object_source(p["target"], ("rados",))
    except ValueError as e:
        module.fail_json(msg=f"target: {p['target']}: {e}")
    shown = f"rados://{pool}" + (f"/{prefix}" if prefix else "")
    rados = module.get_bin_path("rados", required=True)
    base = [rados, "--id", p["ceph_client"], "-p", pool, *(["--striper"] if p["ceph_striper"] else [])]

    def run(*args: str, what: str) -> str:
        rc, out, err = module.run_command([*base, *args])
        if rc != 0:
            lines = (err or out).strip().splitlines()
            module.fail_json(msg=f"{what}: rados {args[0]} exited {rc}: {lines[-1] if lines else ''}")
        return out

    def size_of(obj: str, what: str) -> int:
        out = run("stat", obj, what=what)
        found = SIZE_RE.search(out.strip())
        if not found:
            module.fail_json(msg=f"{what}: rados stat printed no size: {out.strip()[:200]}")
        return int(found.group(1))

    listed = set(run("ls", what=f"rados://{pool}").splitlines())
    todo, replace = [], set()
    for entry in p["files"]:
        rel, size = entry["path"], int(entry["size"])
        obj = f"{prefix}/{rel}" if prefix else rel
        local = os.path.join(p["src"], rel)
        if not os.path.isfile(local) or os.path.islink(local) or os.path.getsize(local) != size:
            module.fail_json(msg=f"{rel}: {local} is not a regular file of the manifest's {size} bytes: publish only "
                                 "a verified folder")
        if obj in listed:
            if size_of(obj, f"{shown}/{rel}") == size:
                continue
            replace.add(rel)
        todo.append((rel, obj, local, size))
    result = {"changed": bool(todo), "published": [t[0] for t in todo], "target": shown}
    if module.check_mode:
        module.exit_json(**result)
    for rel, obj, local, size in todo:
        what = f"{shown}/{rel}"
        if rel in replace:
            run("rm", obj, what=what)
        run("put", obj, local, what=what)
        got = size_of(obj, what)
        if got != size:
            module.fail_json(msg=f"{what}: {got} bytes after rados put, the manifest says {size}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
