"""Offline unit tests of the nvidia_container_toolkit and dcgm roles (no hosts, no GPUs): the files
the roles render (apt source and pin, the dcgm-exporter environment, drop-in and collectors),
rendered with jinja2, and the roles' derived variables over recorded tool output, evaluated by
Ansible's templar with the llmcluster.hosts filters the roles call.

The parsers themselves (OpenPGP, apt-cache madison, dpkg, nvidia-container-cli, nvidia-ctk,
containerd, the dcgmi diag judge and health) are the llmcluster.hosts collection's, tested in
tests/unit/test_hosttools.py; the version pick has one implementation, tested there against real
``apt-cache madison`` and ``dpkg-query`` output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers.hosttool_samples import DPKG_ABBREV, FPR_ED25519, MADISON_DCGM, MADISON_TOOLKIT_LAB, diag_doc

ROLES = ROOT / "roles"


# --------------------------------------------------------------------------- derived variables


def _load(path: Path) -> dict[str, Any]:
    from ansible.parsing.dataloader import DataLoader

    return DataLoader().load_from_file(str(path), trusted_as_template=True) or {}


def role_vars(role: str, **extra: Any) -> dict[str, Any]:
    v: dict[str, Any] = {"ansible_check_mode": False}
    v.update(_load(ROLES / role / "defaults" / "main.yml"))
    v.update(_load(ROLES / role / "vars" / "main.yml"))
    v.update(extra)
    return v


def evaluate(variables: dict[str, Any], name: str) -> Any:
    from ansible.template import Templar, trust_as_template

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()
    return Templar(variables=variables).template(trust_as_template(f"{{{{ {name} }}}}"))


def reg(stdout: str, rc: int = 0) -> dict[str, Any]:
    return {"stdout": stdout, "stdout_lines": stdout.splitlines(), "rc": rc, "stderr": "", "changed": False}


def test_dcgm_versions_resolve_from_madison():
    v = role_vars("dcgm", llmcluster_gpu={"count": 8}, dcgm_version="4.2.3", dcgm_exporter_version="4.1.3",
                  dcgm_cuda_major=12, __dcgm_madison=reg(MADISON_DCGM), __dcgm_dpkg=reg(DPKG_ABBREV))
    assert evaluate(v, "_dcgm_wanted") == {"datacenter-gpu-manager-4-core": "1:4.2.3-1",
                                           "datacenter-gpu-manager-4-cuda12": "1:4.2.3-1",
                                           "datacenter-gpu-manager-exporter": "4.1.3-1"}
    assert evaluate(v, "_dcgm_missing") == []
    assert evaluate(v, "_dcgm_installed")["datacenter-gpu-manager-4-core"] == "1:4.2.3-1"
    assert sorted(evaluate(v, "_dcgm_install_pending")) == ["datacenter-gpu-manager-4-cuda12=1:4.2.3-1",
                                                            "datacenter-gpu-manager-exporter=4.1.3-1"]
    v["dcgm_version"] = "4.2.4"
    assert evaluate(v, "_dcgm_missing") == ["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12"]


@pytest.mark.parametrize("doc, ok", [
    (diag_doc(), True), ("{}", False), ("[]", False), (diag_doc(gpus=7), False),
    ('{"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [{"name": "Denylist"}]}]}}', False),
])
def test_dcgm_gate_judges_the_diag_document(doc, ok):
    """The role's gate: an empty or partial document (a GPU of the inventory missing) fails."""
    v = role_vars("dcgm", llmcluster_gpu={"count": 8}, __dcgm_diag=reg(doc))
    assert evaluate(v, "_dcgm_diag.ok") is ok


def test_toolkit_version_and_key_from_tool_output():
    import base64

    from tests.helpers.hosttool_samples import KEY_ED25519

    v = role_vars("nvidia_container_toolkit", nvidia_container_toolkit_version="1.17.8",
                  __nvidia_container_toolkit_madison=reg(MADISON_TOOLKIT_LAB),
                  __nvidia_container_toolkit_dpkg=reg(DPKG_ABBREV),
                  __nvidia_container_toolkit_key={"content": base64.b64encode(KEY_ED25519.encode()).decode()})
    assert evaluate(v, "_nvidia_container_toolkit_deb_version") == "1.17.8-1"
    assert evaluate(v, "_nvidia_container_toolkit_missing") == ["libnvidia-container-tools"]
    assert evaluate(v, "_nvidia_container_toolkit_installed")["nvidia-container-toolkit"] == "1.17.8-1"
    assert evaluate(v, "_nvidia_container_toolkit_key_info.fingerprints") == [FPR_ED25519]
    v["nvidia_container_toolkit_version"] = "1.17.9"
    assert evaluate(v, "_nvidia_container_toolkit_deb_version") == ""


# --------------------------------------------------------------------------- rendered files


def render(role: str, template: str, **variables) -> str:
    from ansible.plugins.filter.core import to_bool

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLES / role / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["bool"] = to_bool  # Ansible's, as the templates use it
    return env.get_template(template).render(ansible_managed="Ansible managed", **variables)


def deb822(text: str) -> list[dict[str, str]]:
    stanzas, cur = [], {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(":")
        cur[key.strip()] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def test_toolkit_sources_file_is_a_flat_deb822_source():
    text = render(
        "nvidia_container_toolkit",
        "nvidia-container-toolkit.sources.j2",
        nvidia_container_toolkit_repo_url="file:/srv/llmcluster-sim/libnvidia-container",
        _nvidia_container_toolkit_keyring="/etc/apt/keyrings/llmcluster-nvidia-container-toolkit.asc",
        _nvidia_container_toolkit_fingerprint=FPR_ED25519,
    )
    [stanza] = deb822(text)
    assert stanza == {
        "Types": "deb",
        "URIs": "file:/srv/llmcluster-sim/libnvidia-container",
        "Suites": "./",
        "Signed-By": "/etc/apt/keyrings/llmcluster-nvidia-container-toolkit.asc",
    }


@pytest.mark.parametrize("origin", ["nvidia.github.io", ""])
def test_toolkit_pin_holds_the_exact_version_and_origin(origin):
    pkgs = yaml.safe_load((ROLES / "nvidia_container_toolkit" / "defaults" / "main.yml").read_text())[
        "nvidia_container_toolkit_packages"
    ]
    text = render(
        "nvidia_container_toolkit",
        "nvidia-container-toolkit.pref.j2",
        nvidia_container_toolkit_packages=pkgs,
        nvidia_container_toolkit_version="1.17.8",
        _nvidia_container_toolkit_deb_version="1.17.8-1",
        nvidia_container_toolkit_repo_origin=origin,
    )
    version, other = deb822(text)
    assert version == {"Package": " ".join(pkgs), "Pin": "version 1.17.8-1", "Pin-Priority": "1000"}
    assert other == {"Package": " ".join(pkgs), "Pin": f'origin "{origin}"', "Pin-Priority": "100"}


DCGM_VARS = {
    "_dcgm_exporter_listen": "10.20.0.11:9400",
    "_dcgm_exporter_collectors": "/etc/dcgm-exporter/llmcluster-counters.csv",
    "_dcgm_hostengine": "127.0.0.1:5555",
    "_dcgm_hostengine_service": "nvidia-dcgm",
    "_dcgm_exporter_env_file": "/etc/default/nvidia-dcgm-exporter",
    "_dcgm_exporter_bin": "/usr/bin/dcgm-exporter",
    "_dcgm_exporter_web_config": "/etc/dcgm-exporter/llmcluster-web-config.yml",
    "dcgm_exporter_tls": True,
}


def test_exporter_environment_file():
    text = render("dcgm", "nvidia-dcgm-exporter.env.j2", **DCGM_VARS)
    env = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # The lab's stand-in and the real dcgm-exporter read exactly this variable.
    assert env["DCGM_EXPORTER_LISTEN"] == '"10.20.0.11:9400"'
    assert env["DCGM_EXPORTER_COLLECTORS"] == '"/etc/dcgm-exporter/llmcluster-counters.csv"'
    # exporter-toolkit's web configuration (mTLS), the variable the real exporter reads
    assert env["DCGM_EXPORTER_WEB_CONFIG_FILE"] == '"/etc/dcgm-exporter/llmcluster-web-config.yml"'
    plain = render("dcgm", "nvidia-dcgm-exporter.env.j2", **{**DCGM_VARS, "dcgm_exporter_tls": False})
    assert "DCGM_EXPORTER_WEB_CONFIG_FILE" not in plain


def test_exporter_dropin_overrides_execstart_with_the_address():
    text = render("dcgm", "nvidia-dcgm-exporter.dropin.conf.j2", **DCGM_VARS)
    service = text.split("[Service]", 1)[1].splitlines()
    assert "EnvironmentFile=/etc/default/nvidia-dcgm-exporter" in service
    execs = [line for line in service if line.startswith("ExecStart=")]
    assert execs[0] == "ExecStart=", "the packaged ExecStart is reset first"
    argv = execs[1].split("=", 1)[1].split()
    assert argv[0] == "/usr/bin/dcgm-exporter"
    assert argv[argv.index("--address") + 1] == "${DCGM_EXPORTER_LISTEN}"
    assert argv[argv.index("--collectors") + 1] == "${DCGM_EXPORTER_COLLECTORS}"
    assert argv[argv.index("--web-config-file") + 1] == "${DCGM_EXPORTER_WEB_CONFIG_FILE}"
    assert "After=nvidia-dcgm.service network-online.target" in text
    plain = render("dcgm", "nvidia-dcgm-exporter.dropin.conf.j2", **{**DCGM_VARS, "dcgm_exporter_tls": False})
    assert "--web-config-file" not in plain


def test_exporter_web_config_has_node_exporters_tls_settings():
    """The same exporter-toolkit settings as node_exporter's, over the mtls role's files in place."""
    v = role_vars("dcgm", llmcluster_pki={"cert": "/etc/llmcluster/pki/host.crt", "key": "/etc/llmcluster/pki/host.key",
                                          "ca_chain": "/etc/llmcluster/pki/ca-chain.pem"})
    paths = {k: evaluate(v, k) for k in ("dcgm_exporter_cert_path", "dcgm_exporter_key_path", "dcgm_exporter_ca_path")}
    assert paths == {"dcgm_exporter_cert_path": "/etc/llmcluster/pki/host.crt",
                     "dcgm_exporter_key_path": "/etc/llmcluster/pki/host.key",
                     "dcgm_exporter_ca_path": "/etc/llmcluster/pki/ca-chain.pem"}
    dcgm = yaml.safe_load(render("dcgm", "web-config.yml.j2", **paths))
    assert set(dcgm) == {"tls_server_config"}
    tls = dcgm["tls_server_config"]
    assert (tls["cert_file"], tls["key_file"], tls["client_ca_file"]) == tuple(paths.values())
    node = yaml.safe_load(render("node_exporter", "web-config.yml.j2", _node_exporter_tls_dir="/x"))
    node = node["tls_server_config"]
    files = ("cert_file", "key_file", "client_ca_file")
    assert {k: x for k, x in tls.items() if k not in files} == {k: x for k, x in node.items() if k not in files}
    assert tls["client_auth_type"] == "RequireAndVerifyClientCert" and tls["min_version"] == "TLS13"
    assert evaluate(v, "_dcgm_exporter_scheme") == "https"
    v["dcgm_exporter_tls"] = False
    assert evaluate(v, "_dcgm_exporter_scheme") == "http"


def test_exporter_collectors_csv():
    counters = yaml.safe_load((ROLES / "dcgm" / "defaults" / "main.yml").read_text())["dcgm_exporter_counters"]
    text = render("dcgm", "counters.csv.j2", dcgm_exporter_counters=counters)
    rows = [line.split(", ", 2) for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rows) == len(counters) and all(len(r) == 3 for r in rows)
    assert all(r[0].startswith("DCGM_FI_") and r[1] in ("gauge", "counter") for r in rows)
    assert "DCGM_FI_DEV_GPU_TEMP" in [r[0] for r in rows]
