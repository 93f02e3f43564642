"""Static checks of the serving layer's manifests (no API server newer than 1.20 runs here).

* built-in kinds: ``kubernetes-validate`` (PyPI) against the schemas of the target version, strict
  (unknown fields fail); an apiVersion the version does not serve (a removed one, such as
  ``policy/v1beta1``) is an error, not the warning its command line prints;
* CRDs llmcluster renders (LeaderWorkerSet, ScaledObject): JSON schemas written for the fields used
  (``schemas/*.json``), and their pod templates as core ``PodTemplate`` objects of the target version.

Each function returns ``<kind>/<name>: <problem>`` lines (empty: valid).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).with_name("schemas")
CRD_SCHEMAS = {("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset-v1.json",
               ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-v1alpha1.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
               ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.json"}


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text())


def _where(o: dict[str, Any]) -> str:
    return f"{o.get('kind', '?')}/{(o.get('metadata') or {}).get('name', '?')}"


def check_builtin(o: dict[str, Any], version: str) -> list[str]:
    import kubernetes_validate as kv

    try:
        kv.validate(o, f"{version}.0", strict=True)
    except kv.SchemaNotFoundError:
        return [f"{_where(o)}: {o.get('apiVersion')} {o.get('kind')} is not served by Kubernetes {version} "
                "(a removed or unknown API version)"]
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{_where(o)}: {path}: {exc.message}"]
    return []


def _pod_templates(o: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if o.get("kind") != "LeaderWorkerSet":
        return []
    t = (o.get("spec") or {}).get("leaderWorkerTemplate") or {}
    return [(k, t[k]) for k in ("leaderTemplate", "workerTemplate") if isinstance(t.get(k), dict)]


def check_crd(o: dict[str, Any], version: str) -> list[str]:
    import jsonschema

    name = CRD_SCHEMAS.get((o.get("apiVersion"), o.get("kind")))
    if name is None:
        return [f"{_where(o)}: no schema for {o.get('apiVersion')} {o.get('kind')}"]
    v = jsonschema.Draft202012Validator(_schema(name))
    out = [f"{_where(o)}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
           for e in sorted(v.iter_errors(o), key=lambda e: list(map(str, e.absolute_path)))]
    for key, tmpl in _pod_templates(o):
        pt = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{o['metadata']['name']}-{key}"},
              "template": tmpl}
        out += [p.replace("PodTemplate/", f"{o['kind']}/").replace(": template.", f": spec.leaderWorkerTemplate."
                                                                                   f"{key}.", 1)
                for p in check_builtin(pt, version)]
    return out


def check_objects(objects: Iterable[dict[str, Any]], version: str) -> list[str]:
    """Every object: built-in kinds against the version's schemas, CRDs against ours."""
    out: list[str] = []
    for o in objects:
        if (o.get("apiVersion"), o.get("kind")) in CRD_SCHEMAS:
            out += check_crd(o, version)
        else:
            out += check_builtin(o, version)
    return out
