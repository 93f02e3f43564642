"""The llmcluster.hosts collection: the one library of host tool parsers (apt, dpkg, OpenPGP keys,
nvidia-smi, dcgmi, the container toolkit) that the roles use as filters and the verification suite
imports as Python, fed the output formats of the real tools.

Merged here from the tests of the roles' former filter plugins (nvidia_container_toolkit, dcgm,
nvidia_driver's OpenPGP parser) and of verify/gpu.py's former parsers; every case is kept.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    dcgm as D,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    debian as A,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    nvidia_container as NC,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    nvidia_smi as S,
)
from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    openpgp as P,
)
from tests.conftest import COLLECTION, ROOT
from tests.helpers.hosttool_samples import (
    CUDA_URL,
    DPKG_ABBREV,
    FPR_ED25519,
    KEY_ED25519,
    MADISON_DCGM,
    MADISON_TOOLKIT_LAB,
    diag_doc,
)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --------------------------------------------------------------------------- apt / dpkg: real output

#: ``apt-cache madison nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container1
#: libnvidia-container-tools`` on Ubuntu 24.04 with NVIDIA's repository (two spaces before
#: "Packages": a flat repository has no suite/component), and on the lab's file: mirror.
MADISON_TOOLKIT = """\
nvidia-container-toolkit |   1.17.8-1 | https://nvidia.github.io/libnvidia-container/stable/deb/amd64  Packages
nvidia-container-toolkit |   1.17.7-1 | https://nvidia.github.io/libnvidia-container/stable/deb/amd64  Packages
nvidia-container-toolkit-base |   1.17.8-1 | https://nvidia.github.io/libnvidia-container/stable/deb/amd64  Packages
nvidia-container-toolkit-base |   1.17.7-1 | https://nvidia.github.io/libnvidia-container/stable/deb/amd64  Packages
libnvidia-container1 |   1.17.8-1 | https://nvidia.github.io/libnvidia-container/stable/deb/amd64  Packages
"""
#: ``apt-cache madison nvidia-utils-570-server`` on Ubuntu 24.04: the archive's build and the CUDA
#: repository's, and apt's notice for a package it does not know.
UBUNTU_ARCHIVE = "http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64"
MADISON_DRIVER = f"""\
nvidia-utils-570-server | 570.172.08-0ubuntu0.24.04.1 | {UBUNTU_ARCHIVE} Packages
nvidia-utils-570-server | 570.172.08-0ubuntu1 | {CUDA_URL}  Packages
nvidia-utils-570-server | 570.133.20-0ubuntu1 | {CUDA_URL}  Packages
N: Unable to locate package nvidia-driver-570-open
"""

#: ``--showformat='${db:Status-Abbrev}|${Package}|${Version}\\n' 'nvidia-*' 'libnvidia-*'`` (the
#: driver and fabric manager roles' probe; patterns match packages dpkg no longer has too).
DPKG_PIPE = """\
hi |nvidia-utils-570|570.172.08-1
ii |libnvidia-compute-570|570.172.08-1
un |nvidia-driver-550|
rc |nvidia-fabricmanager-550|550.54.15-1
"""
#: ``dpkg-query -W -f '${Package}\\t${Version}\\t${Status}\\n'`` (the verification suite's probe).
DPKG_STATUS = (
    "nvidia-utils-570\t570.172.08-1\thold ok installed\n"
    "nvidia-fabricmanager-570\t570.172.08-1\tinstall ok installed\n"
    "nvidia-fabricmanager-550\t550.54.15-1\tdeinstall ok config-files\n"
    "nvidia-driver-550\t\tunknown ok not-installed\n"
)


def test_madison_real_output():
    m = A.apt_madison(MADISON_TOOLKIT)
    assert m["nvidia-container-toolkit"] == ["1.17.8-1", "1.17.7-1"]
    assert list(m) == ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container1"]
    assert "libnvidia-container-tools" not in m
    assert A.apt_madison(MADISON_DRIVER) == {
        "nvidia-utils-570-server": ["570.172.08-0ubuntu0.24.04.1", "570.172.08-0ubuntu1", "570.133.20-0ubuntu1"]}
    assert A.apt_madison("") == {} and A.apt_madison(None) == {}


def test_madison_from_one_repository():
    only = A.apt_madison(MADISON_DRIVER, CUDA_URL)
    assert only == {"nvidia-utils-570-server": ["570.172.08-0ubuntu1", "570.133.20-0ubuntu1"]}
    assert A.apt_madison(MADISON_DRIVER, CUDA_URL + "/") == only  # a trailing slash is the same repository
    # file:/// in the spec is file:/ to apt
    lab = A.apt_madison(MADISON_TOOLKIT_LAB, "file:///srv/llmcluster-sim/libnvidia-container/")
    assert lab == A.apt_madison(MADISON_TOOLKIT_LAB)
    assert A.apt_madison(MADISON_TOOLKIT_LAB, "file:/srv/other") == {}
    # stdout_lines as Ansible registers them parse the same
    assert A.apt_madison(MADISON_DRIVER.splitlines(), CUDA_URL) == only


def test_version_pick_against_real_madison_output():
    """The one version pick (the toolkit, dcgm, driver and fabric manager roles all call it)."""
    tk = A.apt_madison(MADISON_TOOLKIT)
    assert A.apt_pick_version(tk["nvidia-container-toolkit"], "1.17.8") == "1.17.8-1"
    assert A.apt_pick_version(tk["nvidia-container-toolkit"], "1.17.7") == "1.17.7-1"
    assert A.apt_pick_version(tk["nvidia-container-toolkit"], "1.17.9") == ""
    dc = A.apt_madison(MADISON_DCGM)
    assert A.apt_pick_version(dc["datacenter-gpu-manager-4-core"], "4.2.3", "1") == "1:4.2.3-1"
    assert A.apt_pick_version(dc["datacenter-gpu-manager-4-core"], "4.2.2", "1") == "1:4.2.2-1"
    assert A.apt_pick_version(dc["datacenter-gpu-manager-4-core"], "4.2.3", "") == ""  # the epoch is required
    assert A.apt_pick_version(dc["datacenter-gpu-manager-exporter"], "4.1.3") == "4.1.3-1"
    assert A.apt_resolve(dc, ["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12",
                              "datacenter-gpu-manager-4-cuda13"], "4.2.3", "1") == {
        "datacenter-gpu-manager-4-core": "1:4.2.3-1", "datacenter-gpu-manager-4-cuda12": "1:4.2.3-1"}
    # the driver: only the CUDA repository's build, whatever Ubuntu's archive offers first
    drv = A.apt_madison(MADISON_DRIVER, CUDA_URL)
    assert A.apt_resolve(drv, ["nvidia-utils-570-server"], "570.172.08") == {
        "nvidia-utils-570-server": "570.172.08-0ubuntu1"}
    assert A.apt_resolve(A.apt_madison(MADISON_DRIVER), ["nvidia-utils-570-server"], "570.172.08") == {
        "nvidia-utils-570-server": "570.172.08-0ubuntu0.24.04.1"}


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
        (None, "4.1.3", None, ""),
        (["570.172.080-1", "1:570.172.08-2", "570.172.08-1"], "570.172.08", None, "1:570.172.08-2"),
        (["570.172.08-1-2"], "570.172.08", None, ""),  # upstream 570.172.08-1, revision 2
        (["1.17.8"], "1.17.8", None, ""),  # a native version is not a repository build
    ],
)
def test_version_pick(versions, upstream, epoch, want):
    assert A.apt_pick_version(versions, upstream, epoch) == want


@pytest.mark.parametrize(
    "version, parts",
    [
        ("1:4.2.3-1", {"epoch": "1", "upstream": "4.2.3", "revision": "1"}),
        ("570.172.08-0ubuntu1", {"epoch": "", "upstream": "570.172.08", "revision": "0ubuntu1"}),
        ("1.6.20~ds1-1+b1", {"epoch": "", "upstream": "1.6.20~ds1", "revision": "1+b1"}),
        ("2:1.2-3-4", {"epoch": "2", "upstream": "1.2-3", "revision": "4"}),
        ("1.2", {"epoch": "", "upstream": "1.2", "revision": ""}),
        ("", {"epoch": "", "upstream": "", "revision": ""}),
    ],
)
def test_debian_versions(version, parts):
    assert A.deb_version_split(version) == parts
    assert A.deb_upstream_version(version) == parts["upstream"]


def test_upstream_version_as_verify_and_the_roles_read_it():
    assert A.deb_upstream_version("1:4.2.3-1") == "4.2.3"
    assert A.deb_upstream_version("570.172.08-0ubuntu1") == "570.172.08"


def test_dpkg_installed_counts_installed_and_held_only():
    got = A.dpkg_installed(DPKG_ABBREV)
    assert got == {"containerd": "1.6.20~ds1-1+b1", "nvidia-container-toolkit": "1.17.8-1", "libc6": "2.36-9+deb12u10",
                   "datacenter-gpu-manager-4-core": "1:4.2.3-1"}
    # the former filter plugins' case
    out = ("ii  containerd 1.6.20~ds1-1+b1\nhi  nvidia-container-toolkit 1.17.8-1\n"
           "rc  old-thing 1.0-1\nun  never 0\nii  libc6:amd64 2.36-9\n")
    assert A.dpkg_installed(out) == {"containerd": "1.6.20~ds1-1+b1", "nvidia-container-toolkit": "1.17.8-1",
                                     "libc6": "2.36-9"}
    # the common/mtls/gateway roles' probe prints no version
    assert list(A.dpkg_installed(["ii  openssl", "rc  chrony", "hi  nftables"])) == ["openssl", "nftables"]


def test_dpkg_status_pipe_and_status_formats():
    st = A.dpkg_status(DPKG_PIPE)
    assert st["nvidia-utils-570"] == {"want": "hold", "hold": True, "installed": True, "version": "570.172.08-1"}
    assert st["libnvidia-compute-570"]["installed"] and not st["libnvidia-compute-570"]["hold"]
    assert st["nvidia-driver-550"] == {"want": "unknown", "hold": False, "installed": False, "version": ""}
    assert st["nvidia-fabricmanager-550"]["installed"] is False
    assert A.dpkg_installed(DPKG_STATUS) == {"nvidia-utils-570": "570.172.08-1",
                                             "nvidia-fabricmanager-570": "570.172.08-1"}
    assert A.dpkg_status(DPKG_STATUS)["nvidia-utils-570"]["hold"] is True
    assert A.dpkg_status("") == {} and A.dpkg_status(None) == {}
    # dpkg -l's header or anything else is no package
    assert A.dpkg_status("Desired=Unknown/Install/Remove/Purge/Hold\n||/ Name Version\n+++-====") == {}


def test_apt_mark_holds():
    assert A.apt_mark_holds("nvidia-utils-570\nlibnvidia-compute-570:amd64\n\n") == [
        "nvidia-utils-570", "libnvidia-compute-570"]


# --------------------------------------------------------------------------- OpenPGP



def test_fingerprint_of_an_armored_key():
    info = P.openpgp_key_info(b64(KEY_ED25519))
    assert info == {"armored": True, "fingerprints": [FPR_ED25519], "error": ""}
    assert P.openpgp_fingerprints(b64(KEY_ED25519)) == [FPR_ED25519]
    assert P.openpgp_fingerprints(KEY_ED25519, "text") == [FPR_ED25519]
    with_headers = KEY_ED25519.replace("-----\n\n", "-----\nComment: test\nVersion: GnuPG v2\n\n", 1)
    assert P.openpgp_fingerprints(with_headers, "text") == [FPR_ED25519]


def test_fingerprint_of_a_binary_key():
    binary, armored = P.dearmor(KEY_ED25519.encode())
    assert armored is True
    info = P.openpgp_key_info(b64(binary))
    assert info["armored"] is False and info["fingerprints"] == [FPR_ED25519]
    assert P.openpgp_fingerprints(binary, "raw") == [FPR_ED25519]


def test_every_armored_block_counts():
    """A second key appended after the planned one must show up (and so fail the role's check)."""
    info = P.openpgp_key_info(b64(KEY_ED25519 + "\n" + KEY_ED25519))
    assert info["fingerprints"] == [FPR_ED25519, FPR_ED25519]
    assert info["fingerprints"] != [FPR_ED25519]


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n"])
def test_garbage_is_an_error_never_a_fingerprint(content):
    info = P.openpgp_key_info(b64(content))
    assert info["fingerprints"] == [] and info["error"]


def test_openpgp_parser_rejects_what_is_not_a_key():
    f = P.openpgp_fingerprints
    assert f(b"not a key", "raw") == []
    assert f(base64.b64encode(b"<html>404</html>").decode()) == []
    assert f(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n", "raw") == []
    assert f("%%% not base64 %%%") == []


def test_fingerprint_normalisation():
    assert (
        P.openpgp_normalize_fingerprint("c95b 321b 61e8 8c18 09c4  f759 ddca e044 f796 ecb0")
        == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    )


GPG_COLONS = (
    "pub:-:4096:1:A4B469963BF863CC:1649890520:::-:::scESC::::::23::0:\n"
    "fpr:::::::::EB693B3035CD5710E231E123A4B469963BF863CC:\n"
    "uid:-::::1649890520::0B5B4D26C0D4C5F7F3F2C4B3E4B0A6FE9A2A2B85::cudatools <cudatools@nvidia.com>::::::::::0:\n"
    "sub:-:4096:1:1111111111111111:1649890520::::::e::::::23:\n"
    "fpr:::::::::0000000000000000000000001111111111111111:\n"
)


def test_gpg_colon_output_gives_the_primary_fingerprints_only():
    assert P.gpg_colon_fingerprints(GPG_COLONS) == ["EB693B3035CD5710E231E123A4B469963BF863CC"]
    assert P.gpg_colon_fingerprints(GPG_COLONS.lower().splitlines()) == ["EB693B3035CD5710E231E123A4B469963BF863CC"]
    assert P.gpg_colon_fingerprints("") == []


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed here (apt-get install gnupg)")
@pytest.mark.parametrize("algos", [["ed25519"], ["rsa2048"], ["ed25519", "rsa2048"]])
def test_openpgp_parser_agrees_with_gpg(tmp_path, algos):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        _check_against_gpg(env, algos)
    finally:  # key generation starts a gpg-agent for this home
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, check=False)


def _gpg(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--batch", *args], env=env, capture_output=True, check=True, **kw)


def _check_against_gpg(env: dict[str, str], algos: list[str]) -> None:
    for i, algo in enumerate(algos):
        _gpg(env, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", f"k{i} <k{i}@example.com>",
             algo, "sign,cert", "never")
        listed = _gpg(env, "--list-keys", "--with-colons", f"k{i}@example.com", text=True).stdout
        fpr = [line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:")][0]
        _gpg(env, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-add-key", fpr, "cv25519", "encr",
             "never")
    armored = _gpg(env, "--armor", "--export").stdout
    binary = _gpg(env, "--export").stdout
    shown = _gpg(env, "--show-keys", "--with-colons", input=armored).stdout.decode()
    lines = shown.splitlines()
    want = [lines[i + 1].split(":")[9] for i, line in enumerate(lines) if line.startswith("pub:")]
    f = P.openpgp_fingerprints
    assert f(base64.b64encode(armored).decode()) == want
    assert f(base64.b64encode(binary).decode()) == want
    assert f(armored, "raw") == want and len(want) == len(algos)
    # gpg's own listing, as the nvidia_driver role reads it where gpg is installed
    assert P.gpg_colon_fingerprints(shown) == want


# --------------------------------------------------------------------------- nvidia-smi


def _q(states):
    pad = " " * 20
    out = [f"Driver Version{pad}: 570.172.08", f"CUDA Version{pad}: 12.8", ""]
    for i, (state, status) in enumerate(states):
        out += [f"GPU 00000000:{0x18 + i:02X}:00.0", f"    Product Name{pad}: NVIDIA H200",
                "    Fabric", f"        State{pad}: {state}", f"        Status{pad}: {status}",
                f"        CliqueId{pad}: 1", "    ECC Mode", f"        Current{pad}: Enabled"]
    return "\n".join(out) + "\n"


def test_fabric_sections_tolerate_other_sections():
    assert S.nvidia_smi_fabric(_q([("Completed", "Success")]))[0] == {"State": "Completed", "Status": "Success",
                                                                      "CliqueId": "1"}
    states = S.nvidia_smi_fabric(_q([("Completed", "Success"), ("In Progress", "N/A")]))
    assert [(s["State"], s["Status"]) for s in states] == [("Completed", "Success"), ("In Progress", "N/A")]
    no_fabric = "GPU 00000000:18:00.0\n    Product Name : NVIDIA H200\n    ECC Mode\n        Current : Enabled\n"
    assert S.nvidia_smi_fabric(no_fabric) == [{}]
    assert S.nvidia_smi_fabric("") == []


def test_query_csv():
    fields = ("index", "name", "driver_version", "compute_cap")
    text = "0, NVIDIA H200, 570.172.08, 9.0\n1, NVIDIA H200, 570.172.08, 9.0\n"
    rows = S.nvidia_smi_query(text, fields)
    assert rows[1] == {"index": "1", "name": "NVIDIA H200", "driver_version": "570.172.08", "compute_cap": "9.0"}
    assert S.nvidia_smi_query(text, ",".join(fields)) == rows
    assert S.nvidia_smi_query(text.splitlines(), list(fields)) == rows
    # an error message is no GPU; a one-field query reads each line
    assert S.nvidia_smi_query("NVIDIA-SMI has failed because it couldn't communicate, sorry", fields) == []
    assert S.nvidia_smi_query("570.172.08\n570.172.08\n\n", ["driver_version"]) == [
        {"driver_version": "570.172.08"}] * 2


def test_nvlink_status():
    text = "GPU 0: NVIDIA H200 (UUID: GPU-0)\n\t Link 0: 26.562 GB/s\n\t Link 1: <inactive>\n" \
           "GPU 1: NVIDIA H200 (UUID: GPU-1)\n\t Link 0: 26.562 GB/s\n"
    assert S.nvidia_smi_nvlink(text) == {0: {0: "26.562 GB/s", 1: "<inactive>"}, 1: {0: "26.562 GB/s"}}
    assert S.nvidia_smi_nvlink("") == {}


# --------------------------------------------------------------------------- container toolkit tools

CLI_INFO = "NVRM version:   570.172.08\nCUDA version:   12.8\n" + "".join(
    f"\nDevice Index:   {i}\nDevice Minor:   {i}\nModel:          NVIDIA H200\nBrand:          Nvidia\n"
    f"GPU UUID:       GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd\nBus Location:   00000000:{0x18 + i:02x}:00.0\n"
    "Architecture:   9.0\n"
    for i in range(8)
)


def test_container_cli_info():
    info = NC.nvidia_container_cli_info(CLI_INFO)
    assert info["driver_version"] == "570.172.08" and info["cuda_version"] == "12.8"
    assert [d["index"] for d in info["devices"]] == [str(i) for i in range(8)]
    assert info["devices"][0]["model"] == "NVIDIA H200"
    assert NC.nvidia_container_cli_info("")["devices"] == []


def test_cdi_devices():
    out = "\n".join([f"nvidia.com/gpu={i}" for i in range(8)] + ["nvidia.com/gpu=GPU-0-1", "nvidia.com/gpu=all"])
    names = NC.nvidia_ctk_cdi_devices("INFO[0000] Found 10 CDI devices\n" + out)
    assert names[:8] == [f"nvidia.com/gpu={i}" for i in range(8)] and "nvidia.com/gpu=all" in names
    assert NC.nvidia_ctk_cdi_devices("INFO[0000] Found 0 CDI devices\n") == []


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
    assert {k: NC.container_runtime_nvidia_state(b64(text), runtime)[k] for k in keys} == want
    assert {k: NC.container_runtime_nvidia_state(text, runtime, encoding="text")[k] for k in keys} == want


def test_runtime_state_matches_what_the_lab_nvidia_ctk_writes(tmp_path):
    """The stand-in nvidia-ctk's edit of an empty and of a Debian-like config is seen as configured."""
    from llmcluster.lab.nvidia_sim.tools import nvidia_ctk as ctk

    for initial in ("", 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause"\n'):
        config = tmp_path / "config.toml"
        config.write_text(initial)
        state = NC.container_runtime_nvidia_state(config.read_text(), "containerd", encoding="text")
        assert state["configured"] is False
        assert ctk.configure_containerd(str(config), set_default=True) == 0
        state = NC.container_runtime_nvidia_state(config.read_text(), "containerd", encoding="text")
        assert (state["configured"], state["default"]) == (True, True)


def test_containerd_default_runtime_must_be_defined():
    """The lab's finding: a config whose runtimes table holds only nvidia while the default
    runtime is still runc breaks containerd's CRI plugin; the role fails on it."""
    broken = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  default_runtime_name = "runc"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n  runtime_type = "io.containerd.runc.v2"\n'
    )
    state = NC.container_runtime_nvidia_state(broken, "containerd", encoding="text")
    assert state["configured"] is True and state["default_defined"] is False
    assert state["default_runtime"] == "runc" and state["runtimes"] == ["nvidia"]
    good = NC.container_runtime_nvidia_state(CONTAINERD_V2.format(default="runc"), "containerd", encoding="text")
    assert good["default_defined"] is True and good["runtimes"] == ["runc", "nvidia"]
    # No default named (a file without the CRI section): containerd's own default applies.
    assert NC.container_runtime_nvidia_state(CONTAINERD_V3, "containerd", encoding="text")["default_defined"] is True


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
    assert NC.ctr_plugin_errors(out) == ["io.containerd.grpc.v1 cri", "io.containerd.cri.v1 runtime"]
    assert NC.ctr_plugin_errors(out.replace("error", "ok")) == []


# --------------------------------------------------------------------------- dcgmi diag judge




@pytest.mark.parametrize("top", ["DCGM GPU Diagnostic", "DCGM Diagnostic"])
def test_diag_judge_passes_a_clean_run(top):
    r = D.dcgm_diag_report(diag_doc(top=top))
    assert r["ok"] is True and r["tests"] == 5 and r["failures"] == [] and r["error"] == ""
    assert D.dcgm_diag_report(diag_doc(top=top), gpus=8)["ok"] is True
    assert D.dcgm_diag_report(diag_doc(top=top).splitlines(), gpus=8)["ok"] is True  # stdout_lines
    assert D.dcgm_diag_report(json.loads(diag_doc(top=top)), gpus=8)["ok"] is True  # parsed


def test_diag_judge_names_the_failing_tests_and_their_messages():
    r = D.dcgm_diag_report(
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
    r = D.dcgm_diag_report(doc)
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
    assert D.dcgm_diag_report(doc)["ok"] is True


def test_diag_judge_reads_dcgm3_results():
    """DCGM 3: deployment results name their GPUs as "gpu_ids": "0,1", per-GPU ones "gpu_id"."""
    doc = {"DCGM GPU Diagnostic": {"test_categories": [
        {"category": "Deployment", "tests": [{"name": "Denylist", "results": [{"gpu_ids": "0,1", "status": "Pass"}]}]},
        {"category": "Hardware", "tests": [{"name": "Diagnostic", "results": [
            {"gpu_id": "0", "status": "Pass"}, {"gpu_id": "1", "status": "Pass"}]}]}]}}
    assert D.dcgm_diag_report(doc, gpus=2)["ok"] is True
    doc["DCGM GPU Diagnostic"]["test_categories"][1]["tests"][0]["results"].pop()
    r = D.dcgm_diag_report(doc, gpus=2)
    assert r["ok"] is False and r["failures"][0]["entities"] == ["GPU 1"]


def test_diag_judge_ignores_other_entities_for_gpu_coverage():
    """An NVSwitch test has no GPU result: it is not a GPU missing."""
    doc = {"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [
        {"name": "nvswitch", "results": [{"entity_group": "NvSwitch", "entity_id": 0, "status": "Pass"}]},
        {"name": "memory", "results": [{"entity_group": "GPU", "entity_id": i, "status": "Pass"} for i in range(2)]},
    ]}]}}
    assert D.dcgm_diag_report(doc, gpus=2)["ok"] is True


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
    r = D.dcgm_diag_report(text)
    assert r["ok"] is False and needle in r["error"]


def _tests(**results):
    """A document of tests {name: [status per GPU] | None (printed without "results")}."""
    tests = []
    for name, statuses in results.items():
        t = {"name": name, "test_summary": {"status": "Pass"}}
        if statuses is not None:
            t["results"] = [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": i, "status": s}
                            for i, s in enumerate(statuses)]
        tests.append(t)
    return {"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": tests}]}}


#: Documents that show no failure because they show nothing, or not everything: dcgmi can print
#: them with exit 0 (a host engine that lost its GPUs, a truncated run). Each must fail the judge.
EMPTY_OR_PARTIAL = {
    "empty object": "{}",
    "empty list": "[]",
    "null": "null",
    "banner then {}": "Successfully ran diagnostic for group.\n{}",
    "no test categories": '{"DCGM Diagnostic": {"test_categories": []}, "version": "4.2.3"}',
    "categories not a list": '{"DCGM Diagnostic": {"test_categories": {}}}',
    "a category without tests": '{"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": []}]}}',
    "a category without a tests key": '{"DCGM Diagnostic": {"test_categories": [{"category": "Deployment"}]}}',
    "an empty category next to a full one": {"DCGM Diagnostic": {"test_categories": [
        *_tests(a=["Pass"] * 2)["DCGM Diagnostic"]["test_categories"], {"category": "Hardware", "tests": []}]}},
    "tests without per-test results": _tests(Denylist=None, NVML=None),
    "one test without results": _tests(Denylist=["Pass"] * 2, NVML=None),
    "a test with an empty results list": _tests(Denylist=["Pass"] * 2, NVML=[]),
    "a GPU missing from one test": _tests(Denylist=["Pass"] * 2, NVML=["Pass"]),
    "a test that is not an object": {"DCGM Diagnostic": {"test_categories": [
        {"category": "Deployment", "tests": ["Denylist"]}]}},
}


@pytest.mark.parametrize("doc", list(EMPTY_OR_PARTIAL.values()), ids=list(EMPTY_OR_PARTIAL))
def test_diag_judge_fails_an_empty_or_partial_document(doc):
    r = D.dcgm_diag_report(doc if isinstance(doc, str) else json.dumps(doc))
    assert r["ok"] is False and (r["error"] or r["failures"]), r
    assert D.dcgm_diag_report(doc, gpus=2)["ok"] is False


def test_diag_judge_needs_every_planned_gpu():
    """Fewer GPUs in every test than the inventory has: the missing ones have no result."""
    r = D.dcgm_diag_report(diag_doc(gpus=7), gpus=8)
    assert r["ok"] is False and {tuple(f["entities"]) for f in r["failures"]} == {("GPU 7",)}
    assert "Denylist (Deployment) has no result for GPU 7" in r["messages"]
    assert D.dcgm_diag_report(diag_doc(gpus=7))["ok"] is True  # without a count: every GPU it names


def test_diag_judge_reads_json_after_a_banner():
    assert D.dcgm_diag_report("Successfully ran diagnostic for group.\n" + diag_doc())["ok"] is True


def test_diag_judge_on_the_lab_stand_in(monkeypatch):
    """The stand-in dcgmi's document (a passing and a failing board) is judged as it should be."""
    from llmcluster.lab.nvidia_sim.tools import dcgmi

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

    assert D.dcgm_diag_report(run({}), gpus=8)["ok"] is True
    bad = D.dcgm_diag_report(run({"dcgm_diag_fail": "injected fault"}), gpus=8)
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
    on = D.dcgm_health_systems(HEALTH_FETCH.format(mem="On "))
    assert len(on) == 8 and set(on.values()) == {"On"}
    off = D.dcgm_health_systems(HEALTH_FETCH.format(mem="Off"))
    assert off["Memory"] == "Off"
    assert D.dcgm_health_systems("Error: unable to connect") == {}


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
    assert D.dcgm_health_overall(text) == want


def test_discovery_count():
    assert D.dcgmi_gpu_count("8 GPUs found.\n+----+\n") == 8
    assert D.dcgmi_gpu_count("1 GPU found.\n") == 1
    assert D.dcgmi_gpu_count("Error") == -1


# --------------------------------------------------------------------------- the collection itself

MODULE_UTILS = COLLECTION / "plugins" / "module_utils"
FILTERS = COLLECTION / "plugins" / "filter"


@functools.cache
def ansible_filters() -> dict:
    """Every filter of the collection as Ansible resolves ``llmcluster.hosts.<name>``."""
    from ansible.plugins.loader import filter_loader

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()
    names = [n for f in sorted(FILTERS.glob("*.py")) for n in re.findall(r'^\s+"(\w+)": \w+,$', f.read_text(), re.M)]
    return {n: filter_loader.get(f"llmcluster.hosts.{n}") for n in names}


def test_every_filter_resolves_by_fqcn_to_the_module_utils_code():
    filters = ansible_filters()
    assert len(filters) >= 20 and all(filters.values()), [n for n, f in filters.items() if not f]
    for name, plugin in filters.items():
        func = plugin.j2_function
        source = Path(inspect.getsourcefile(inspect.unwrap(func))).resolve()
        assert source.parent == MODULE_UTILS.resolve(), (name, source)
        assert func.__name__ == name


def test_the_role_filter_and_the_verify_judge_are_one_function():
    """Same source, same code: the verification suite's dcgm judge is the role's filter."""
    from llmcluster.verify import gpu

    role = ansible_filters()["dcgm_diag_report"].j2_function
    assert inspect.unwrap(role).__code__.co_filename == gpu.dcgm_diag_report.__code__.co_filename
    assert inspect.unwrap(role).__code__.co_code == gpu.dcgm_diag_report.__code__.co_code
    assert role("{}")["ok"] is False and role(diag_doc(), gpus=8)["ok"] is True


def test_module_utils_use_the_standard_library_only():
    """module_utils may be shipped to hosts and are imported by llmcluster: stdlib (and each other) only."""
    import sys

    for path in MODULE_UTILS.glob("*.py"):
        for m in re.finditer(r"^\s*(?:from\s+(\S+)\s+import|import\s+(\S+))", path.read_text(), re.M):
            mod = (m.group(1) or m.group(2)).split(".")[0]
            assert mod in ("", "__future__") or mod in sys.stdlib_module_names, (path.name, mod)


def test_galaxy_metadata_is_pinned():
    import yaml

    meta = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert (meta["namespace"], meta["name"]) == ("llmcluster", "hosts")
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert (COLLECTION / "README.md").is_file() and (COLLECTION / "meta" / "runtime.yml").is_file()
    assert COLLECTION.is_relative_to(ROOT / "llmcluster")  # shipped in the Python package


def test_verify_gpu_defines_no_parser_of_its_own():
    """llmcluster/verify/gpu.py judges facts; parsing the tools' output is the collection's: it
    imports the parsers (the same objects), and defines no parse_* nor a function of the same
    name as a collection parser."""
    import ast

    from llmcluster.verify import gpu

    tree = ast.parse(Path(gpu.__file__).read_text(encoding="utf-8"))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    collection = {name for mod in (A, D, NC, S, P) for name, obj in vars(mod).items()
                  if inspect.isfunction(obj) and obj.__module__ == mod.__name__ and not name.startswith("_")}
    assert not defined & collection, defined & collection
    assert not {n for n in defined if n.startswith(("parse", "upstream")) or n in ("diag_failures",)}
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("llmcluster.collections.ansible_collections.llmcluster.hosts.")
                for alias in n.names}
    assert {"dcgm_diag_report", "dpkg_installed", "deb_upstream_version", "nvidia_smi_query", "nvidia_smi_fabric",
            "nvidia_smi_nvlink", "nvidia_container_cli_info", "nvidia_ctk_cdi_devices"} <= imported
    for name in imported:
        mod = next(m for m in (A, D, NC, S, P) if hasattr(m, name))
        assert getattr(gpu, name) is getattr(mod, name), name
