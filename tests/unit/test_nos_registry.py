"""The switch OS registry (llmcluster.nos) is the single source of switch OS knowledge.

* every OS module provides every field of the registry's descriptor, and every OS module is
  registered;
* the supported OS names are the registry's keys everywhere (spec Literal, provider checks);
* render -> parse -> semantic check round-trips for every registered OS;
* no OS name is hard-coded outside llmcluster/nos (tables keyed by OS names, comparisons with
  one, OS-name tuples), except the spec model's ``Literal``, checked equal to the registry;
* importing the registry pulls in nothing heavy and nothing from render/components/lab
  (the plan and the dynamic provider's host import it).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from llmcluster import nos as registry
from llmcluster.nos import NOSES, REGISTRY, TEMPLATE_DIR, Nos, NosProcedure, get
from llmcluster.render.switch import render_switch
from llmcluster.render.switch.check import check_switch, semantic_problems
from tests.conftest import ROOT, load_plan

PACKAGE = ROOT / "llmcluster"
NOS_DIR = PACKAGE / "nos"
HEAVY = ("jinja2", "netaddr", "pydantic", "yaml", "jsonschema", "hier_config", "paramiko")


# --------------------------------------------------------------------------- every module, every field


def test_every_nos_module_is_registered_and_provides_every_field():
    modules = sorted(p.stem for p in NOS_DIR.glob("*.py") if p.stem not in ("__init__", "base"))
    assert sorted(NOSES) == modules, "one module per switch OS, each registered in llmcluster/nos/__init__.py"
    for name in NOSES:
        module = importlib.import_module(f"llmcluster.nos.{name}")
        nos = module.NOS
        assert isinstance(nos, Nos) and nos.name == name and REGISTRY[name] is nos and get(name) is nos
        for f in dataclasses.fields(Nos):
            value = getattr(nos, f.name)
            assert value is not None, (name, f.name)
            if f.type == "str":
                assert isinstance(value, str) and value, (name, f.name)
        for fn in (nos.port_name, nos.port_number, nos.bond_name, nos.parse, nos.variables,
                   nos.procedure.normalise):
            assert callable(fn), (name, fn)
        assert all(callable(f) for f in nos.filters.values()), name
        assert (TEMPLATE_DIR / nos.template).is_file(), f"{name}: template {nos.template} missing"
        assert isinstance(nos.procedure, NosProcedure) and nos.procedure.apply and nos.procedure.running
        assert nos.procedure.stage_dir.startswith("/")
        assert nos.file_name("leaf-01") == f"leaf-01.{nos.extension}"
        for n in (1, 2, 64):
            assert nos.parse_port(nos.port_name(n)) == n and nos.parse_port(str(n)) == n
        assert nos.parse_port("0") is None and nos.parse_port("port1") is None


def test_every_template_belongs_to_one_registered_nos():
    templates = sorted(p.name for p in TEMPLATE_DIR.glob("*.j2"))
    assert templates == sorted(n.template for n in REGISTRY.values())


def test_names_are_unique_across_the_registry():
    for attr in ("title", "format_name", "extension", "template"):
        values = [getattr(n, attr) for n in REGISTRY.values()]
        assert len(set(values)) == len(values), attr
    assert len({n.port_name(1) for n in REGISTRY.values()}) == len(NOSES)


def test_unknown_nos_names_the_supported_ones():
    for bad in ("junos", "", None, "CUMULUS"):
        with pytest.raises(ValueError, match=r"unknown switch OS .*: use one of cumulus, sonic, eos"):
            get(bad)


# --------------------------------------------------------------------------- the same names everywhere


def test_noses_are_the_registry_keys_everywhere():
    from llmcluster.components import switches as provider
    from llmcluster.spec.models import Baremetal

    assert NOSES == tuple(REGISTRY) == ("cumulus", "sonic", "eos")
    assert provider.NOSES is NOSES
    assert typing.get_args(Baremetal.model_fields["switch_os"].annotation) == NOSES, \
        "baremetal.switch_os must list exactly the registered switch OSes (llmcluster.nos.NOSES)"
    failures = provider.SwitchConfigProvider().check({}, {"nos": "junos"}).failures
    assert any(f.property == "nos" and ", ".join(NOSES) in f.reason for f in failures)


def test_no_module_outside_the_registry_defines_noses():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == NOS_DIR / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            assert "NOSES" not in names, f"{path.relative_to(ROOT)}:{node.lineno} defines NOSES again"


# --------------------------------------------------------------------------- render -> parse -> check


@pytest.mark.parametrize("name", NOSES)
def test_render_parse_check_round_trip(name):
    plan = load_plan("prod-baremetal")
    nos = get(name)
    for sw in plan.switches.switches:
        text = render_switch(sw, name, plan.switches.stack)
        view = nos.parse(text)
        assert view.nos == name and view.hostname == sw.name
        assert {nos.port_name(p.number) for p in sw.ports} <= set(view.ports)
        assert {nos.bond_name(b) for b in sw.bonds} <= set(view.ports)
        assert semantic_problems(sw, view, plan.firewall) == []
        assert check_switch(sw, text, name, plan.firewall) == []
        assert check_switch(sw, "", name, plan.firewall)[0].startswith(f"{sw.name}: not a valid {name} configuration")


# --------------------------------------------------------------------------- nothing hard-coded elsewhere


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and node.value in NOSES else None


def hard_coded(path: Path, root: Path = ROOT) -> list[str]:
    """Places in ``path`` that key, compare or list switch OS names instead of asking the registry."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    literal_slices = {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)
                      and isinstance(n.value, ast.Name) and n.value.id == "Literal"}
    out = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Dict) and any(k is not None and _literal(k) for k in node.keys):
            what = "a table keyed by switch OS names"
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and sum(bool(_literal(e)) for e in node.elts) >= 2:
            if id(node) not in literal_slices:
                what = "a list of switch OS names"
        elif isinstance(node, ast.Compare) and any(
                _literal(e) or (isinstance(e, (ast.Tuple, ast.List, ast.Set)) and any(map(_literal, e.elts)))
                for e in (node.left, *node.comparators)):
            what = "a comparison with a switch OS name"
        elif isinstance(node, ast.Subscript) and _literal(node.slice):
            what = "a lookup by switch OS name"
        elif isinstance(node, ast.MatchValue) and _literal(node.value):
            what = "a match on a switch OS name"
        if what:
            out.append(f"{path.relative_to(root)}:{node.lineno}: {what}")
    return sorted(out, key=lambda s: int(s.split(":")[1]))


def test_no_switch_os_is_hard_coded_outside_the_registry():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if NOS_DIR not in path.parents:
            found.extend(hard_coded(path))
    assert found == [], "ask llmcluster.nos (get(name), NOSES) instead:\n" + "\n".join(found)
    literals = [p for p in PACKAGE.rglob("*.py") if NOS_DIR not in p.parents
                and "Literal[" in p.read_text(encoding="utf-8") and "cumulus" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(ROOT).as_posix() for p in literals] == ["llmcluster/spec/models.py"]
    for path in sorted(PACKAGE.rglob("*.j2")):
        if NOS_DIR not in path.parents:
            text = path.read_text(encoding="utf-8")
            assert not any(f"'{n}'" in text or f'"{n}"' in text for n in NOSES), path


def test_the_hard_code_check_finds_what_it_looks_for(tmp_path):
    path = tmp_path / "sample.py"
    path.write_text('EXT = {"cumulus": "nvue.yaml"}\nNOSES = ("cumulus", "sonic")\nok = nos == "eos"\n'
                    'x = EXT["sonic"]\nok = nos in ("eos",)\nT = Literal["cumulus", "sonic", "eos"]\n'
                    'f("cumulus")\n"""cumulus, sonic and eos"""\n', encoding="utf-8")
    assert hard_coded(path, tmp_path) == [
        "sample.py:1: a table keyed by switch OS names", "sample.py:2: a list of switch OS names",
        "sample.py:3: a comparison with a switch OS name", "sample.py:4: a lookup by switch OS name",
        "sample.py:5: a comparison with a switch OS name"]


# --------------------------------------------------------------------------- import weight


def _fresh_import(module: str) -> dict:
    code = ("import json, sys\n"
            f"import {module}\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    return set(json.loads(out.stdout))


def test_registry_imports_only_the_standard_library():
    modules = _fresh_import("llmcluster.nos")
    ours = sorted(m for m in modules if m.startswith("llmcluster"))
    assert ours == ["llmcluster", "llmcluster.nos", *(f"llmcluster.nos.{m}" for m in ("base", *sorted(NOSES)))]
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
    assert registry.__file__.startswith(str(NOS_DIR))
