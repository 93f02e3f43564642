"""Static checks of the host roles and the site playbook (no hosts needed).

The linters first (``ansible-lint --profile production``, ``yamllint -s``; each skipped with
its reason where it is not installed), ``ansible-playbook --syntax-check`` over the dynamic
inventory of every stack, then the conventions of the design notes checked by parsing the
YAML ourselves, as a second line of defence behind the linters: argument specs equal to the
defaults, every task named and calling a fully-qualified module that exists, handlers named
and listened to, variable prefixes, the tasks/main.yml layout, OS variables, platforms. And
what the roles deploy: the netplan file they render is checked against the IP plan (and by
``netplan generate`` where netplan is installed); the interface names of access mode are the
renderer's.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, STACK_NAMES
from tests.helpers.tools import ANSIBLE_DIR, tool, tool_env

ROLES_DIR = ROOT / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())
PLATFORMS = {"Ubuntu": {"jammy", "noble"}, "Debian": {"bookworm"}}
PHASES = ("preflight", "install", "configure", "service")
#: Tags each phase of tasks/main.yml carries (the preflight runs with every phase).
PHASE_TAGS = {"preflight": ("install", "configure", "run"), "install": ("install",),
              "configure": ("configure",), "service": ("run",)}
BLOCK_KEYS = ("block", "rescue", "always")


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def task_keywords() -> frozenset[str]:
    from ansible.playbook.task import Task

    return frozenset(Task.fattributes) | {"listen", "local_action", *BLOCK_KEYS}


@functools.cache
def plugin_loaders():
    from ansible.plugins.loader import action_loader, module_loader

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()
    return module_loader, action_loader


def resolves(module: str) -> bool:
    modules, actions = plugin_loaders()
    return bool(modules.find_plugin_with_context(module).resolved or actions.find_plugin_with_context(module).resolved)


def walk_tasks(tasks: list[dict] | None, where: str):
    """Every task (blocks included, and the blocks themselves) with a readable location."""
    for i, t in enumerate(tasks or []):
        here = f"{where}[{i}] {t.get('name', '<unnamed>')!r}"
        yield here, t
        for key in BLOCK_KEYS:
            if key in t:
                yield from walk_tasks(t[key], f"{here}.{key}")


def task_files(role: str) -> list[Path]:
    return sorted((ROLES_DIR / role / "tasks").glob("*.yml")) + [ROLES_DIR / role / "handlers" / "main.yml"]


def action_of(task: dict) -> str | None:
    keys = [k for k in task if k not in task_keywords() and not k.startswith("with_")]
    return keys[0] if len(keys) == 1 else None


# --------------------------------------------------------------------------- linters


def test_yamllint_is_clean():
    exe = tool("yamllint")
    assert exe, "yamllint is not installed: it is a pinned test dependency (pip install -e '.[test]')"
    r = subprocess.run([exe, "-s", "roles", "ansible", ".ansible-lint", ".yamllint", "llmcluster/collections"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ansible_lint_production_profile_is_clean():
    exe = tool("ansible-lint")
    assert exe, "ansible-lint is not installed: it is a pinned test dependency (pip install -e '.[test]')"
    env = tool_env()
    env.pop("ANSIBLE_CONFIG")  # ansible-lint finds the roles from the project root itself
    # ... and the llmcluster.hosts collection (its modules: model_stage, model_publish) where ansible/ansible.cfg's
    # collections_path puts it.
    from tests.conftest import COLLECTIONS

    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    r = subprocess.run([exe, "--profile", "production", "--offline", "--nocolor", "roles", "ansible"], cwd=ROOT,
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ansible_lint_production_profile_is_clean_on_the_hosts_collection():
    """The llmcluster.hosts collection (galaxy.yml, meta/runtime.yml, plugins) is a valid collection.
    Linted from its own folder: the project's exclude_paths leave out the Python package it lives in."""
    from tests.conftest import COLLECTION

    exe = tool("ansible-lint")
    if exe is None:
        pytest.skip("ansible-lint is not installed (pip install ansible-lint; see the project's test extras)")
    env = tool_env()
    env.pop("ANSIBLE_CONFIG")
    r = subprocess.run([exe, "--profile", "production", "--offline", "--nocolor"], cwd=COLLECTION,
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"in ([1-9]\d*) files processed", r.stdout + r.stderr), r.stdout + r.stderr


def test_lint_configuration():
    cfg = load(ROOT / ".ansible-lint")
    assert cfg["profile"] == "production"
    assert not cfg.get("skip_list") and not cfg.get("warn_list"), "skips need a comment saying why (DESIGN 3)"
    assert load(ROOT / ".yamllint")["extends"] == "default"


def test_ansible_cfg_finds_the_hosts_collection():
    """Whatever runs Ansible with ansible/ansible.cfg (converge, verify, the tests' playbooks) finds
    llmcluster.hosts: collections_path, relative to that file, is the package's collections folder."""
    from tests.conftest import COLLECTIONS

    r = subprocess.run([tool("ansible-config") or "ansible-config", "dump", "--only-changed", "--format", "json"],
                       cwd=ROOT, env=tool_env(), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    import json

    paths = next(e["value"] for e in json.loads(r.stdout) if e["name"] == "COLLECTIONS_PATHS")
    assert [Path(p).resolve() for p in paths] == [COLLECTIONS.resolve()]
    assert "collections_path = ../llmcluster/collections" in (ANSIBLE_DIR / "ansible.cfg").read_text()


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_site_playbook_syntax_with_the_dynamic_inventory(stack):
    env = tool_env() | {"LLMCLUSTER_STACK": stack}
    r = subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", str(ANSIBLE_DIR / "inventory" /
                        "llmcluster.py"), "--syntax-check", str(ANSIBLE_DIR / "site.yml")],
                       cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_site_playbook_plays():
    plays = load(ANSIBLE_DIR / "site.yml")
    assert plays, "site.yml has no play"
    covered = set()
    for play in plays:
        name = play.get("name", "<unnamed>")
        assert play.get("any_errors_fatal") is True, f"{name}: a rolling play must stop at the first failure"
        assert "serial" in play, f"{name}: production plays roll (serial)"
        roles = [r["role"] if isinstance(r, dict) else r for r in play["roles"]]
        extra = {"gateway": ["gateway", "audit_log", "audit_cloudwatch"], "storage": ["ceph"],
                 "gpu": ["ceph", "nvidia_driver", "nvidia_fabricmanager", "nvidia_container_toolkit", "dcgm",
                         "nvme_raid", "model_store", "tensorrt_llm", "serving_tls"],
                 "monitor": ["audit_store", "alertmanager", "prometheus"]}
        # node_exporter on every host (docs/observability.md)
        expected = ["common", "network", "firewall", "mtls", "node_exporter"] + extra.get(play["hosts"], [])
        assert roles == expected, name
        covered.add(play["hosts"])
    assert {"gpu", "storage", "gateway", "monitor"} <= covered
    assert any(h.startswith("all:!") for h in covered), "hosts of no known group must be converged too"


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_keys_equal_defaults(role):
    defaults = load(ROLES_DIR / role / "defaults" / "main.yml") or {}
    spec = load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]
    options = spec.get("options") or {}
    assert set(options) == set(defaults), (
        f"{role}: only in defaults {sorted(set(defaults) - set(options))}, "
        f"only in argument_specs {sorted(set(options) - set(defaults))}")
    for name, opt in options.items():
        assert opt.get("description"), f"{role}: argument {name} has no description"
        assert "type" in opt, f"{role}: argument {name} has no type"


@pytest.mark.parametrize("role", ROLES)
def test_variable_prefixes(role):
    for name in load(ROLES_DIR / role / "defaults" / "main.yml") or {}:
        assert name.startswith(f"{role}_"), f"{role}: default {name} lacks the '{role}_' prefix"
    for path in sorted((ROLES_DIR / role / "vars").glob("*.yml")):
        for name in load(path) or {}:
            assert name.startswith(f"_{role}_"), f"{path.relative_to(ROOT)}: {name} lacks the '_{role}_' prefix"
    for path in task_files(role):
        for where, task in walk_tasks(load(path), str(path.relative_to(ROOT))):
            if "register" in task:
                assert task["register"].startswith(f"__{role}_"), f"{where}: registers {task['register']}"
            for name in task.get("vars") or {}:
                assert name.startswith(f"__{role}_"), f"{where}: task variable {name} lacks '__{role}_'"


@pytest.mark.parametrize("role", ROLES)
def test_every_task_is_named_and_uses_an_existing_fqcn_module(role):
    for path in task_files(role):
        for where, task in walk_tasks(load(path), str(path.relative_to(ROOT))):
            assert task.get("name"), f"{where}: unnamed task"
            assert task["name"][0].isupper(), f"{where}: names start with a capital letter"
            if any(k in task for k in BLOCK_KEYS):
                continue
            module = action_of(task)
            assert module, f"{where}: cannot tell the module from keys {sorted(task)}"
            assert re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+", module), f"{where}: {module} is not an FQCN"
            assert resolves(module), f"{where}: module {module} is not installed"
            if module in ("ansible.builtin.command", "ansible.builtin.shell"):
                params = task.get(module)
                args = {**(task.get("args") or {}), **(params if isinstance(params, dict) else {})}
                assert "changed_when" in task or "creates" in args or "removes" in args, \
                    f"{where}: a command must say when it changes something"


#: Jinja idioms that parsed tool output inside the roles before the llmcluster.hosts collection
#: (dpkg status lines, "a|b|c" madison/dpkg fields, Debian epochs and revisions, nvidia-smi CSV
#: columns and -q sections, gpg's colon records).
REPARSING = (
    "select('match', '^ii')", "split('|')", "regex_replace('^[0-9]+:'", "regex_replace('-[^-]*$'",
    "map('split', ',')", "regex_findall('(?m)^GPU", "Fabric\\s*\\n", "line.split(':')",
)
#: Filters of the former per-role filter plugins, by their short names.
FORMER_FILTERS = ("dcgm_diag_report", "dcgm_health_systems", "dcgm_health_overall", "dcgmi_gpu_count",
                  "dcgm_apt_madison", "dcgm_apt_pick_version", "dcgm_dpkg_installed", "openpgp_fingerprints",
                  "nct_openpgp_key_info", "nct_normalize_fingerprint", "nct_apt_madison", "nct_apt_pick_version",
                  "nct_dpkg_installed", "nct_container_cli_info", "nct_cdi_devices", "nct_runtime_nvidia_state",
                  "nct_ctr_plugin_errors")


def role_texts(role: str) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
            for p in sorted((ROLES_DIR / role).rglob("*")) if p.suffix in (".yml", ".yaml", ".j2") and p.is_file()}


@pytest.mark.parametrize("role", ROLES)
def test_roles_parse_tool_output_with_the_hosts_collection_only(role):
    """No role carries its own plugins to parse tool output, nor re-parses it in Jinja: the
    llmcluster.hosts collection's filters do (the same code as the verification suite's)."""
    own = [p.name for p in (ROLES_DIR / role).iterdir() if p.is_dir() and p.name.endswith("_plugins")]
    assert not own, f"{role} carries its own plugins {own}: parsers belong in the llmcluster.hosts collection"
    assert not (ROLES_DIR / role / "module_utils").exists() and not (ROLES_DIR / role / "library").exists()
    from ansible.plugins.loader import filter_loader, module_loader

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()
    for path, text in role_texts(role).items():
        for idiom in REPARSING:
            assert idiom not in text, f"{path}: re-parses tool output with {idiom!r}: use a llmcluster.hosts filter"
        for name in FORMER_FILTERS:
            assert not re.search(rf"\|\s*{name}\b", text), f"{path}: {name} without its FQCN llmcluster.hosts.{name}"
        for name in sorted(set(re.findall(r"\bllmcluster\.hosts\.(\w+)", text))):
            fqcn = f"llmcluster.hosts.{name}"
            assert filter_loader.get(fqcn) or module_loader.find_plugin(fqcn), f"{path}: {fqcn} does not exist"


@pytest.mark.parametrize("role", ROLES)
def test_handlers_are_named_and_listened_to(role):
    handlers = load(ROLES_DIR / role / "handlers" / "main.yml") or []
    topics: set[str] = set()
    for where, h in walk_tasks(handlers, f"{role}/handlers"):
        assert h.get("name") and h.get("listen"), f"{where}: handlers have a name and listen"
        listen = h["listen"]
        topics.update([listen] if isinstance(listen, str) else listen)
    for topic in topics:
        assert topic.startswith(f"{role} "), f"{role}: handler topic {topic!r} should start with the role name"
    notified: set[str] = set()
    for path in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        for where, task in walk_tasks(load(path), str(path.relative_to(ROOT))):
            if "notify" in task:
                n = task["notify"]
                for topic in [n] if isinstance(n, str) else n:
                    assert topic in topics, f"{where}: notifies {topic!r}, which no handler listens to"
                    notified.add(topic)
    assert topics <= notified, f"{role}: handler topics never notified: {sorted(topics - notified)}"


@pytest.mark.parametrize("role", ROLES)
def test_main_orchestrates_the_phases_with_tags(role):
    main = load(ROLES_DIR / role / "tasks" / "main.yml")
    first = main[0]
    assert action_of(first) == "ansible.builtin.include_vars", f"{role}: tasks/main.yml starts with the OS variables"
    assert "ansible.builtin.first_found" in str(first["ansible.builtin.include_vars"]), f"{role}: OS vars, first_found"
    imports = [(t["ansible.builtin.import_tasks"], t.get("tags") or []) for t in main[1:]]
    assert [f for f, _ in imports] == [f"{p}.yml" for p in PHASES], f"{role}: phases are {imports}"
    for (_, tags), phase in zip(imports, PHASES, strict=True):
        assert sorted(tags) == sorted(f"{role}_{t}" for t in PHASE_TAGS[phase]), f"{role}: {phase} tagged {tags}"
    assert sorted(first.get("tags") or []) == sorted(f"{role}_{t}" for t in ("install", "configure", "run"))
    for phase in PHASES:
        assert (ROLES_DIR / role / "tasks" / f"{phase}.yml").is_file()


@pytest.mark.parametrize("role", ROLES)
def test_preflight_asserts_with_messages(role):
    tasks = list(walk_tasks(load(ROLES_DIR / role / "tasks" / "preflight.yml"), f"{role}/preflight"))
    asserts = [(w, t) for w, t in tasks if action_of(t) == "ansible.builtin.assert"]
    assert asserts, f"{role}: the preflight asserts something"
    for where, t in asserts:
        assert t["ansible.builtin.assert"].get("fail_msg"), f"{where}: an assert says what to fix (fail_msg)"


@pytest.mark.parametrize("role", ROLES)
def test_os_variables_and_platforms(role):
    for os_name in PLATFORMS:
        assert (ROLES_DIR / role / "vars" / f"{os_name}.yml").is_file(), f"{role}: no vars/{os_name}.yml"
    # Every OS file defines the same variables.
    keys = {p.name: set(load(p) or {}) for p in (ROLES_DIR / role / "vars").glob("*.yml") if p.name != "main.yml"}
    assert len({frozenset(k) for k in keys.values()}) == 1, f"{role}: OS variable files differ: {keys}"
    meta = load(ROLES_DIR / role / "meta" / "main.yml")
    platforms = {p["name"]: set(p["versions"]) for p in meta["galaxy_info"]["platforms"]}
    assert platforms == PLATFORMS, f"{role}: platforms {platforms}"
    assert meta["galaxy_info"]["role_name"] == role


@pytest.mark.parametrize("role", ROLES)
def test_probes_never_report_changes_and_run_in_check_mode(role):
    """Read-only commands (``ip -j``, ``tc -j``, ``nft list``, ``sshd -T``) are changed_when false
    and run in check mode too (their results drive the other tasks)."""
    for path in task_files(role):
        for where, task in walk_tasks(load(path), str(path.relative_to(ROOT))):
            if action_of(task) != "ansible.builtin.command" or "register" not in task:
                continue
            args = task.get("ansible.builtin.command") or {}
            if isinstance(args, dict) and ("creates" in args or "removes" in args):
                continue  # not a probe: it changes the host once (e.g. journalctl --setup-keys) and says when
            assert task.get("changed_when") is False, f"{where}: a probe is changed_when: false"
            assert task.get("check_mode") is False, f"{where}: a probe runs in check mode (check_mode: false)"


# --------------------------------------------------------------------------- what the roles deploy


def test_access_interface_names_match_the_plan():
    from llmcluster.plan.hostnet import ACCESS_IFNAMES

    assert load(ROLES_DIR / "network" / "vars" / "main.yml")["_network_access_names"] == ACCESS_IFNAMES


def _netplan_play() -> str:
    from tests.helpers.role_local import local_play

    role = ROLES_DIR / "network"
    return local_play("Render the network role's netplan file", role=role,
                      vars_files=("defaults/main.yml", "vars/main.yml"), tasks=[
                          {"name": "Render", "ansible.builtin.template": {
                              "src": f"{role}/templates/netplan.yaml.j2", "dest": "{{ out_dir }}/{{ item }}.yaml",
                              "mode": "0600"},
                           "loop": "{{ hosts_vars.keys() | list }}",
                           "vars": {"llmcluster_interfaces": "{{ hosts_vars[item].llmcluster_interfaces }}",
                                    "llmcluster_interface_names": "{{ hosts_vars[item].llmcluster_interface_names }}",
                                    "network_mode": "tagged"}}])


def test_netplan_file_matches_the_ip_plan(tmp_path):
    """Tagged mode: one VLAN per planned interface on the uplink, with the plan's id, MTU, address."""
    from tests.conftest import load_plan

    plan = load_plan("prod-baremetal")
    hosts = [h.name for h in plan.ip.hosts]
    hosts_vars = {}
    for name in hosts:
        from llmcluster.inventory import host_vars

        hv = host_vars(plan, name)
        assert hv["llmcluster_network_mode"] == "tagged"
        hosts_vars[name] = {"llmcluster_interfaces": hv["llmcluster_interfaces"],
                            "llmcluster_interface_names": hv["llmcluster_interface_names"]}
    from tests.helpers.role_local import run_playbook

    r = run_playbook(tmp_path, _netplan_play(), {"hosts_vars": hosts_vars, "out_dir": str(tmp_path)}, name="render",
                     timeout=None)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in hosts:
        doc = load(tmp_path / f"{name}.yaml")
        vlans = doc["network"]["vlans"]
        ifaces = hosts_vars[name]["llmcluster_interfaces"]
        assert doc["network"]["version"] == 2
        assert sorted(vlans) == sorted(f"vlan{i['vlan_id']}" for i in ifaces.values()), name
        for role, i in ifaces.items():
            v = vlans[f"vlan{i['vlan_id']}"]
            assert (v["id"], v["link"], v["mtu"]) == (i["vlan_id"], "bond0", i["mtu"]), f"{name} {role}"
            assert v["addresses"] == [f"{i['address']}/{i['prefix']}"], f"{name} {role}"
            routes = v.get("routes", [])
            assert routes == ([{"to": "default", "via": i["gateway"]}] if role == "mgmt" else []), f"{name} {role}"
    netplan = shutil.which("netplan")
    if netplan is None:
        pytest.skip("netplan is not installed here: rendered files checked against the plan only")
    for name in hosts:
        root = tmp_path / "root" / name
        (root / "etc" / "netplan").mkdir(parents=True)
        base = {"network": {"version": 2, "bonds": {"bond0": {"interfaces": [], "mtu": 9216}}}}
        (root / "etc" / "netplan" / "50-base.yaml").write_text(yaml.safe_dump(base))
        shutil.copy(tmp_path / f"{name}.yaml", root / "etc" / "netplan" / "60-llmcluster.yaml")
        r = subprocess.run([netplan, "generate", "--root-dir", str(root)], capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0, f"{name}: {r.stdout}{r.stderr}"
