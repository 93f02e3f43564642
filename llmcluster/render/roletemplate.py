"""Render a role's Jinja2 template outside Ansible, with the role's own defaults (the Kubernetes layer's
gateway and TLS terminator configurations are the gateway and serving_tls roles' templates).

The role's ``defaults/main.yml`` and ``vars/main.yml`` are evaluated the way Ansible evaluates them
(lazily, every ``{{ }}`` string rendered with native types against the other variables, the given
variables taking precedence over the defaults), then the template is rendered with Ansible's
template settings (``trim_blocks``). Only the filters those files use are provided; a template that
needs another one fails loudly (``jinja2.TemplateAssertionError``), never renders something else.
Variables a template derives from a host (registered results, ``ansible_check_mode``) are not
available: pass what the template needs in ``variables``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
import yaml
from jinja2.nativetypes import NativeEnvironment

ROLES = Path(__file__).resolve().parents[2] / "roles"
#: What Ansible's ``ansible_managed`` says in the rendered files (the roles' header line).
MANAGED = "Ansible managed: rendered by llmcluster (Kubernetes serving layer) from the role's template"


def _filters(env: jinja2.Environment) -> None:
    env.filters["dirname"] = os.path.dirname
    env.filters["basename"] = os.path.basename
    env.filters["ansible.utils.ipwrap"] = lambda v: f"[{v}]" if ":" in str(v) else v
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    return False


def _names(env: jinja2.Environment, value: Any) -> set[str]:
    if isinstance(value, str):
        return set(meta.find_undeclared_variables(env.parse(value))) if _templated(value) else set()
    if isinstance(value, list):
        return set().union(*[_names(env, v) for v in value]) if value else set()
    if isinstance(value, dict):
        return set().union(*[_names(env, v) for v in value.values()]) if value else set()
    return set()


def _render(env: NativeEnvironment, value: Any, ctx: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and _templated(value):
        return env.from_string(value).render(**ctx)
    if isinstance(value, list):
        return [_render(env, v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _render(env, v, ctx) for k, v in value.items()}
    return value


def role_variables(role: str, variables: Mapping[str, Any], roles: Path = ROLES) -> dict[str, Any]:
    """The role's defaults and vars evaluated against ``variables`` (which override the defaults)."""
    raw: dict[str, Any] = {}
    for part in ("defaults/main.yml", "vars/main.yml"):
        f = roles / role / part
        if f.is_file():
            raw.update(yaml.safe_load(f.read_text()) or {})
    raw.update(variables)
    raw.setdefault("ansible_managed", MANAGED)
    env = NativeEnvironment(undefined=jinja2.StrictUndefined)
    _filters(env)
    done = {k: v for k, v in raw.items() if not _templated(v)}
    pending: dict[str, set[str]] = {}
    for k, v in raw.items():
        if k in done:
            continue
        try:
            pending[k] = _names(env, v)
        except jinja2.TemplateError:
            continue  # uses a filter of the collection (host facts): not renderable here
    progress = True
    while pending and progress:
        progress = False
        for k, needs in list(pending.items()):
            waiting = (needs & set(raw)) - set(done) - {k}
            if waiting and waiting <= set(pending):
                continue  # another variable first
            if not waiting:
                try:
                    done[k] = _render(env, raw[k], done)
                except jinja2.TemplateError:
                    pass  # needs something only a host has (a registered result): left out
            del pending[k]  # rendered, or needs a variable that could not be: left out
            progress = True
    return done


def render_role_template(role: str, template: str, variables: Mapping[str, Any], roles: Path = ROLES) -> str:
    """``roles/<role>/templates/<template>`` rendered with the role's evaluated variables."""
    values = role_variables(role, variables, roles)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(roles / role / "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    _filters(env)
    return env.get_template(template).render(**values)
