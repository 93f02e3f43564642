"""Offline unit tests of the nvidia_container_toolkit and dcgm roles (no hosts, no GPUs).

The roles' filter plugins (the OpenPGP fingerprint check that guards the apt key, apt-cache
madison and dpkg parsing, the nvidia-container-cli / nvidia-ctk / containerd parsers, the
dcgmi diag JSON judge and the dcgmi health parsers) and the files the roles render (apt
source and pin, the dcgm-exporter environment, drop-in and collectors), rendered with jinja2.
"""

from __future__ import annotations

import base64
import importlib.util
import json

import jinja2
import pytest
import yaml

from tests.conftest import ROOT

ROLES = ROOT / "roles"


def load_filters(role: str, module: str):
    path = ROLES / role / "filter_plugins" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"_llmcluster_test_{role}_filters", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


NCT = load_filters("nvidia_container_toolkit", "nvidia_container_toolkit")
DCGM = load_filters("dcgm", "dcgm")


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --------------------------------------------------------------------------- OpenPGP

#: An ed25519 test key made with GnuPG 2.2 (``gpg --quick-gen-key ... ed25519``); gpg prints
#: the fingerprint below for it.
KEY_ED25519 = """\
-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawPMsxYJKwYBBAHaRw8BAQdAR+vwUFOWZSX8lDqgDZAkglm2OytNO7z2J4iy
UjRnGIi0I2xsbWNsdXN0ZXIgdGVzdCA8dEBleGFtcGxlLmludmFsaWQ+iJAEExYI
ADgWIQR02DkAXhxWkcoChYL+ED+7ovHO8QUCawPMswIbAwULCQgHAgYVCgkICwIE
FgIDAQIeAQIXgAAKCRD+ED+7ovHO8TY1AQDorts1NHaDLOL9ettZb9AF1Q2UT1/d
cR79o20zcNLVtQEAi4M0yOapycrzOO/1p+R/nkgjsbTcySmOt27fcU77LwQ=
=rbEs
-----END PGP PUBLIC KEY BLOCK-----
"""
FPR_ED25519 = "74D839005E1C5691CA028582FE103FBBA2F1CEF1"


def test_fingerprint_of_an_armored_key():
    info = NCT.openpgp_key_info(b64(KEY_ED25519))
    assert info == {"armored": True, "fingerprints": [FPR_ED25519], "error": ""}


def test_fingerprint_of_a_binary_key():
    binary = NCT._dearmor(KEY_ED25519)
    info = NCT.openpgp_key_info(b64(binary))
    assert info["armored"] is False and info["fingerprints"] == [FPR_ED25519]


def test_every_armored_block_counts():
    """A second key appended after the planned one must show up (and so fail the role's check)."""
    info = NCT.openpgp_key_info(b64(KEY_ED25519 + "\n" + KEY_ED25519))
    assert info["fingerprints"] == [FPR_ED25519, FPR_ED25519]
    assert info["fingerprints"] != [FPR_ED25519]


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n"])
def test_garbage_is_an_error_never_a_fingerprint(content):
    info = NCT.openpgp_key_info(b64(content))
    assert info["fingerprints"] == [] and info["error"]


def test_fingerprint_normalisation():
    assert (
        NCT.normalize_fingerprint("c95b 321b 61e8 8c18 09c4  f759 ddca e044 f796 ecb0")
        == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    )


# --------------------------------------------------------------------------- apt / dpkg

MADISON_TOOLKIT = """\
nvidia-container-toolkit |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit |   1.17.7-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
nvidia-container-toolkit-base |   1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
libnvidia-container1 | 1.17.8-1 | file:/srv/llmcluster-sim/libnvidia-container ./ Packages
"""


def test_madison_and_version_pick():
    m = NCT.apt_madison(MADISON_TOOLKIT)
    assert m["nvidia-container-toolkit"] == ["1.17.8-1", "1.17.7-1"]
    assert NCT.apt_pick_version(m["nvidia-container-toolkit"], "1.17.8") == "1.17.8-1"
    assert NCT.apt_pick_version(m["nvidia-container-toolkit"], "1.17.7") == "1.17.7-1"
    assert NCT.apt_pick_version(m["nvidia-container-toolkit"], "1.17.9") == ""
    assert "libnvidia-container-tools" not in m


@pytest.mark.parametrize(
    "versions, upstream, epoch, want",
    [
        (["1.17.80-1", "1.17.8.1-1", "1.17.8-1"], "1.17.8", None, "1.17.8-1"),  # no prefix matches
        (["1:4.2.3-1"], "4.2.3", "1", "1:4.2.3-1"),
        (["4.2.3-1"], "4.2.3", "1", ""),  # DCGM 4 carries the epoch: without it it is another package
        (["1:4.2.3-1"], "4.2.3", "", ""),
        (["1:4.2.3-1", "1:4.2.2-1"], "4.2.2", None, "1:4.2.2-1"),
        (["4.1.3-1"], "4.1.3", None, "4.1.3-1"),
        ([], "4.1.3", None, ""),
    ],
)
def test_version_pick(versions, upstream, epoch, want):
    assert NCT.apt_pick_version(versions, upstream, epoch) == want
    assert DCGM.apt_pick_version(versions, upstream, epoch) == want


def test_dpkg_installed_counts_installed_and_held_only():
    out = (
        "ii  containerd 1.6.20~ds1-1+b1\nhi  nvidia-container-toolkit 1.17.8-1\n"
        "rc  old-thing 1.0-1\nun  never 0\nii  libc6:amd64 2.36-9\n"
    )
    got = NCT.dpkg_installed(out)
    assert got == {"containerd": "1.6.20~ds1-1+b1", "nvidia-container-toolkit": "1.17.8-1", "libc6": "2.36-9"}
    assert DCGM.dpkg_installed(out) == got


# --------------------------------------------------------------------------- toolkit tools

CLI_INFO = "NVRM version:   570.172.08\nCUDA version:   12.8\n" + "".join(
    f"\nDevice Index:   {i}\nDevice Minor:   {i}\nModel:          NVIDIA H200\nBrand:          Nvidia\n"
    f"GPU UUID:       GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd\nBus Location:   00000000:{0x18 + i:02x}:00.0\n"
    "Architecture:   9.0\n"
    for i in range(8)
)


def test_container_cli_info():
    info = NCT.container_cli_info(CLI_INFO)
    assert info["driver_version"] == "570.172.08" and info["cuda_version"] == "12.8"
    assert [d["index"] for d in info["devices"]] == [str(i) for i in range(8)]
    assert info["devices"][0]["model"] == "NVIDIA H200"
    assert NCT.container_cli_info("")["devices"] == []


def test_cdi_devices():
    out = "\n".join([f"nvidia.com/gpu={i}" for i in range(8)] + ["nvidia.com/gpu=GPU-0-1", "nvidia.com/gpu=all"])
    names = NCT.cdi_devices("INFO[0000] Found 10 CDI devices\n" + out)
    assert names[:8] == [f"nvidia.com/gpu={i}" for i in range(8)] and "nvidia.com/gpu=all" in names
    assert NCT.cdi_devices("INFO[0000] Found 0 CDI devices\n") == []


CONTAINERD_V2 = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "{default}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
"""
CONTAINERD_V3 = """\
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
"""


@pytest.mark.parametrize(
    "text, runtime, want",
    [
        (CONTAINERD_V2.format(default="runc"), "containerd", {"configured": True, "default": False}),
        (CONTAINERD_V2.format(default="nvidia"), "containerd", {"configured": True, "default": True}),
        (CONTAINERD_V3, "containerd", {"configured": True, "default": False}),
        ("version = 2\n", "containerd", {"configured": False, "default": False}),
        ("", "containerd", {"configured": False, "default": False}),
        ("this is [not toml", "containerd", {"configured": False, "default": False}),
        (
            '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}',
            "docker",
            {"configured": True, "default": False},
        ),
        ('{"default-runtime": "nvidia", "runtimes": {"nvidia": {}}}', "docker", {"configured": True, "default": True}),
        ("{}", "docker", {"configured": False, "default": False}),
        ("{broken", "docker", {"configured": False, "default": False}),
    ],
)
def test_runtime_nvidia_state(text, runtime, want):
    keys = ("configured", "default")
    assert {k: NCT.runtime_nvidia_state(b64(text), runtime)[k] for k in keys} == want
    assert {k: NCT.runtime_nvidia_state(text, runtime, encoding="text")[k] for k in keys} == want


def test_runtime_state_matches_what_the_lab_nvidia_ctk_writes(tmp_path):
    """The stand-in nvidia-ctk's edit of an empty and of a Debian-like config is seen as configured."""
    ctk = pytest.importorskip("llmcluster.lab.nvidia_sim.tools.nvidia_ctk")
    for initial in ("", 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause"\n'):
        config = tmp_path / "config.toml"
        config.write_text(initial)
        assert NCT.runtime_nvidia_state(config.read_text(), "containerd", encoding="text")["configured"] is False
        assert ctk.configure_containerd(str(config), set_default=True) == 0
        state = NCT.runtime_nvidia_state(config.read_text(), "containerd", encoding="text")
        assert (state["configured"], state["default"]) == (True, True)


# --------------------------------------------------------------------------- dcgmi diag judge


def diag_doc(failing: dict[str, str] | None = None, top: str = "DCGM GPU Diagnostic", gpus: int = 8) -> str:
    """A ``dcgmi diag -r 1 -j`` document in the layout DCGM 3/4 print (per-GPU results)."""
    failing = failing or {}
    tests = []
    for name in ("Denylist", "NVML Library", "CUDA Main Library", "Persistence Mode", "Fabric Manager"):
        bad = name in failing
        results = []
        for i in range(gpus):
            r = {"entity_group": "GPU", "entity_group_id": 1, "entity_id": i, "status": "Fail" if bad else "Pass"}
            if bad:
                r["warnings"] = [{"warning": failing[name], "error_id": 1, "error_category": 1, "error_severity": 2}]
            results.append(r)
        tests.append({"name": name, "results": results, "test_summary": {"status": "Fail" if bad else "Pass"}})
    return json.dumps(
        {
            top: {"test_categories": [{"category": "Deployment", "tests": tests}]},
            "metadata": {"DCGM Version": "4.2.3"},
            "version": "4.2.3",
        },
        indent=4,
    )


@pytest.mark.parametrize("top", ["DCGM GPU Diagnostic", "DCGM Diagnostic"])
def test_diag_judge_passes_a_clean_run(top):
    r = DCGM.dcgm_diag_report(diag_doc(top=top))
    assert r["ok"] is True and r["tests"] == 5 and r["failures"] == [] and r["error"] == ""


def test_diag_judge_names_the_failing_tests_and_their_messages():
    r = DCGM.dcgm_diag_report(
        diag_doc(
            {
                "Fabric Manager": "GPU fabric state is Not Started (status N/A); is nvidia-fabricmanager running?",
                "Persistence Mode": "Persistence mode for GPU is disabled.",
            }
        )
    )
    assert r["ok"] is False and r["tests"] == 5
    assert [f["test"] for f in r["failures"]] == ["Persistence Mode", "Fabric Manager"]
    fm = r["failures"][1]
    assert fm["category"] == "Deployment" and fm["entities"] == [f"GPU {i}" for i in range(8)]
    assert fm["messages"] == ["GPU fabric state is Not Started (status N/A); is nvidia-fabricmanager running?"]
    text = " | ".join(r["messages"])
    assert "Fabric Manager (Deployment) failed on GPU 0" in text and "Persistence mode for GPU is disabled." in text


def test_diag_judge_fails_on_a_failed_summary_without_results():
    doc = {
        "DCGM Diagnostic": {
            "test_categories": [
                {
                    "category": "Integration",
                    "tests": [
                        {
                            "name": "pcie",
                            "results": [],
                            "test_summary": {"status": "Fail", "errors": ["PCIe replay storm"]},
                        }
                    ],
                }
            ]
        }
    }
    r = DCGM.dcgm_diag_report(doc)
    assert r["ok"] is False and r["failures"][0]["messages"] == ["PCIe replay storm"]


def test_diag_judge_accepts_skips_and_warnings():
    doc = {
        "DCGM Diagnostic": {
            "test_categories": [
                {
                    "category": "Deployment",
                    "tests": [
                        {"name": "a", "results": [{"entity_id": 0, "status": "Skip"}]},
                        {
                            "name": "b",
                            "results": [{"entity_id": 0, "status": "Warn", "warnings": [{"message": "slow"}]}],
                        },
                        {"name": "c", "results": [{"entity_id": 0, "status": "Pass"}]},
                    ],
                }
            ]
        }
    }
    assert DCGM.dcgm_diag_report(doc)["ok"] is True


@pytest.mark.parametrize(
    "text, needle",
    [
        ("Error: unable to establish a connection to the specified host: 127.0.0.1", "did not print JSON"),
        ("", "did not print JSON"),
        ('{"runtime_error": "Unable to load NVML"}', "Unable to load NVML"),
        ('{"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": []}]}}', "ran no test"),
    ],
)
def test_diag_judge_fails_closed(text, needle):
    r = DCGM.dcgm_diag_report(text)
    assert r["ok"] is False and needle in r["error"]


def test_diag_judge_reads_json_after_a_banner():
    assert DCGM.dcgm_diag_report("Successfully ran diagnostic for group.\n" + diag_doc())["ok"] is True


def test_diag_judge_on_the_lab_stand_in(tmp_path, monkeypatch):
    """The stand-in dcgmi's document (a passing and a failing board) is judged as it should be."""
    dcgmi = pytest.importorskip("llmcluster.lab.nvidia_sim.tools.dcgmi")
    gpus = [
        {
            "index": i,
            "ecc_mode": "Enabled",
            "links_down": [],
            "nvlinks": 18,
            "name": "NVIDIA H200",
            "uuid": f"GPU-{i}",
            "pci_bus_id": f"00000000:{i:02x}:00.0",
        }
        for i in range(8)
    ]
    monkeypatch.setattr(dcgmi, "installed_driver_version", lambda: "570.172.08")
    monkeypatch.setattr(dcgmi, "persistence_enabled", lambda: True)
    hw = {"gpus": gpus, "fabric": "none"}

    def run(faults):
        checks = dcgmi.diag_checks(hw, gpus, faults)
        tests = [{"name": n, **dcgmi._result(ok, gpus, i, w)} for n, ok, i, w in checks]
        return {"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": tests}]}}

    assert DCGM.dcgm_diag_report(run({}))["ok"] is True
    bad = DCGM.dcgm_diag_report(run({"dcgm_diag_fail": "injected fault"}))
    assert bad["ok"] is False and bad["failures"][0]["test"] == "Software"
    assert bad["failures"][0]["messages"] == ["injected fault"]


# --------------------------------------------------------------------------- dcgmi health / discovery

HEALTH_FETCH = """\
+----------------------------+---------------------------------------------+
| Health Monitor Systems Status                                            |
+============================+=============================================+
| PCIe                       | On                                          |
| NVLINK                     | On                                          |
| Memory                     | {mem}                                          |
| SM                         | On                                          |
| Inforom                    | On                                          |
| Thermal                    | On                                          |
| Power                      | On                                          |
| Driver                     | On                                          |
+----------------------------+---------------------------------------------+
"""


def test_health_watches_parse():
    on = DCGM.dcgm_health_systems(HEALTH_FETCH.format(mem="On "))
    assert len(on) == 8 and set(on.values()) == {"On"}
    off = DCGM.dcgm_health_systems(HEALTH_FETCH.format(mem="Off"))
    assert off["Memory"] == "Off"
    assert DCGM.dcgm_health_systems("Error: unable to connect") == {}


@pytest.mark.parametrize(
    "text, want",
    [
        ("| Overall Health            | Healthy                                      |", "Healthy"),
        ("| Overall Health            | Failure                                      |", "Failure"),
        ("Overall Health: Warning", "Warning"),
        ("nothing", ""),
    ],
)
def test_health_overall(text, want):
    assert DCGM.dcgm_health_overall(text) == want


def test_discovery_count():
    assert DCGM.dcgmi_gpu_count("8 GPUs found.\n+----+\n") == 8
    assert DCGM.dcgmi_gpu_count("1 GPU found.\n") == 1
    assert DCGM.dcgmi_gpu_count("Error") == -1


# --------------------------------------------------------------------------- rendered files


def render(role: str, template: str, **variables) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLES / role / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
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
}


def test_exporter_environment_file():
    text = render("dcgm", "nvidia-dcgm-exporter.env.j2", **DCGM_VARS)
    env = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # The lab's stand-in and the real dcgm-exporter read exactly this variable.
    assert env["DCGM_EXPORTER_LISTEN"] == '"10.20.0.11:9400"'
    assert env["DCGM_EXPORTER_COLLECTORS"] == '"/etc/dcgm-exporter/llmcluster-counters.csv"'


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
    assert "After=nvidia-dcgm.service network-online.target" in text


def test_exporter_collectors_csv():
    counters = yaml.safe_load((ROLES / "dcgm" / "defaults" / "main.yml").read_text())["dcgm_exporter_counters"]
    text = render("dcgm", "counters.csv.j2", dcgm_exporter_counters=counters)
    rows = [line.split(", ", 2) for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rows) == len(counters) and all(len(r) == 3 for r in rows)
    assert all(r[0].startswith("DCGM_FI_") and r[1] in ("gauge", "counter") for r in rows)
    assert "DCGM_FI_DEV_GPU_TEMP" in [r[0] for r in rows]


def test_containerd_default_runtime_must_be_defined():
    """The lab's finding: a config whose runtimes table holds only nvidia while the default
    runtime is still runc breaks containerd's CRI plugin; the role fails on it."""
    broken = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "runc"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n  runtime_type = "io.containerd.runc.v2"\n'
    )
    state = NCT.runtime_nvidia_state(broken, "containerd", encoding="text")
    assert state["configured"] is True and state["default_defined"] is False
    assert state["default_runtime"] == "runc" and state["runtimes"] == ["nvidia"]
    good = NCT.runtime_nvidia_state(CONTAINERD_V2.format(default="runc"), "containerd", encoding="text")
    assert good["default_defined"] is True and good["runtimes"] == ["runc", "nvidia"]
    # No default named (a file without the CRI section): containerd's own default applies.
    assert NCT.runtime_nvidia_state(CONTAINERD_V3, "containerd", encoding="text")["default_defined"] is True


def test_ctr_plugin_errors():
    out = """\
TYPE                            ID                       PLATFORMS      STATUS
io.containerd.snapshotter.v1    devmapper                linux/amd64    error
io.containerd.snapshotter.v1    overlayfs                linux/amd64    ok
io.containerd.grpc.v1           cri                      linux/amd64    error
io.containerd.cri.v1            images                   -              ok
io.containerd.cri.v1            runtime                  linux/amd64    error
"""
    # devmapper is not configured on most hosts: only the CRI plugins count.
    assert NCT.ctr_plugin_errors(out) == ["io.containerd.grpc.v1 cri", "io.containerd.cri.v1 runtime"]
    assert NCT.ctr_plugin_errors(out.replace("error", "ok")) == []
