"""The pure logic of the nvidia_driver and nvidia_fabricmanager roles, offline (no hosts).

The roles' derived variables (``vars/main.yml``: package names, the ``apt-cache madison``
version resolution, the pending installs, the holds to release, the fabric manager lock, the
fabric state parsing) are evaluated with Ansible's own templar against recorded command output;
the repository, pin and unattended-upgrades files are rendered from the role templates; the
OpenPGP fingerprint parser (used where ``gpg`` is not installed) is checked against ``gpg``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

ROLES = ROOT / "roles"
DRIVER = ROLES / "nvidia_driver"
FABRIC = ROLES / "nvidia_fabricmanager"
REPO = "file:/srv/llmcluster-sim/cuda"


# --------------------------------------------------------------------------- helpers


def _load(path: Path) -> dict[str, Any]:
    from ansible.parsing.dataloader import DataLoader

    return DataLoader().load_from_file(str(path), trusted_as_template=True) or {}


def role_vars(role: Path, os_name: str = "Debian", **hostvars: Any) -> dict[str, Any]:
    """defaults, then vars/main.yml and the OS file (the role's precedence), then registered results."""
    v: dict[str, Any] = {}
    v.update(_load(role / "defaults" / "main.yml"))
    v.update(_load(role / "vars" / "main.yml"))
    v.update(_load(role / "vars" / f"{os_name}.yml"))
    v.setdefault("ansible_check_mode", False)
    v.setdefault(
        "ansible_facts",
        {
            "distribution": os_name,
            "distribution_version": "24.04" if os_name == "Ubuntu" else "12",
            "distribution_major_version": "24" if os_name == "Ubuntu" else "12",
            "architecture": "x86_64",
            "os_family": "Debian",
        },
    )
    v.setdefault("groups", {})
    v.setdefault("hostvars", {})
    v.update(hostvars)
    return v


def template(variables: dict[str, Any], text: str) -> Any:
    from ansible.template import Templar, trust_as_template

    from tests.conftest import init_ansible_plugins

    init_ansible_plugins()  # the roles' filters: the llmcluster.hosts collection
    return Templar(variables=variables).template(trust_as_template(text))


def evaluate(variables: dict[str, Any], name: str) -> Any:
    return template(variables, f"{{{{ {name} }}}}")


def reg(stdout: str = "", rc: int = 0, **extra: Any) -> dict[str, Any]:
    return {"stdout": stdout, "stdout_lines": stdout.splitlines(), "rc": rc, "stderr": "", "changed": False, **extra}


def madison(*rows: tuple[str, str, str]) -> dict[str, Any]:
    return reg("\n".join(f"{p:>24} | {v} | {src} Packages" for p, v, src in rows))


def dpkg(*rows: tuple[str, str, str]) -> dict[str, Any]:
    return reg("\n".join(f"{st}|{p}|{v}" for st, p, v in rows), rc=0)


GPU_570 = {
    "model": "h200",
    "count": 8,
    "nvswitch": True,
    "fabric": "nvswitch",
    "arch": "hopper",
    "driver_version": "570.172.08",
    "driver_branch": "570",
    "driver_flavor": "open",
    "packages": {
        "driver": ["nvidia-driver-570-open", "nvidia-utils-570", "nvidia-compute-utils-570", "libnvidia-nscq-570"],
        "fabric": ["nvidia-fabricmanager-570"],
        "fabric_service": "nvidia-fabricmanager",
    },
}
NVIDIA_CONF = {
    "cuda_repo": {
        "url": REPO,
        "key_url": f"{REPO}/../llmcluster-sim-archive-keyring.asc",
        "key_fingerprint": "20B9 E28A 5586 3B1C C6B2  4946 9DDB 31D4 8895 496E",
        "origin": "",
    },
    "skip_reboot": True,
}


def driver_vars(os_name: str = "Debian", gpu: dict | None = None, **regs: Any) -> dict[str, Any]:
    return role_vars(
        DRIVER, os_name, llmcluster_gpu=gpu if gpu is not None else GPU_570, llmcluster_nvidia=NVIDIA_CONF, **regs
    )


# --------------------------------------------------------------------------- nvidia_driver: names


def test_driver_packages_come_from_the_inventory():
    assert evaluate(driver_vars(), "_nvidia_driver_packages") == GPU_570["packages"]["driver"]
    assert evaluate(driver_vars(), "_nvidia_driver_utils_package") == "nvidia-utils-570"


@pytest.mark.parametrize(
    "os_name, flavor, nvswitch, expected",
    [
        ("Debian", "open", False, ["nvidia-driver-580-open", "nvidia-utils-580", "nvidia-compute-utils-580"]),
        (
            "Debian",
            "proprietary",
            True,
            ["nvidia-driver-580", "nvidia-utils-580", "nvidia-compute-utils-580", "libnvidia-nscq-580"],
        ),
        (
            "Ubuntu",
            "open",
            True,
            [
                "nvidia-driver-580-server-open",
                "nvidia-utils-580-server",
                "nvidia-compute-utils-580-server",
                "libnvidia-nscq-580",
            ],
        ),
        (
            "Ubuntu",
            "proprietary",
            False,
            ["nvidia-driver-580-server", "nvidia-utils-580-server", "nvidia-compute-utils-580-server"],
        ),
    ],
)
def test_driver_packages_derived_per_os(os_name, flavor, nvswitch, expected):
    gpu = {"driver_version": "580.95.05", "driver_flavor": flavor, "nvswitch": nvswitch}
    v = driver_vars(os_name, gpu)
    assert evaluate(v, "nvidia_driver_branch") == "580"
    assert evaluate(v, "_nvidia_driver_packages") == expected
    assert evaluate(v, "_nvidia_driver_utils_package") == expected[1]


def test_default_repository_per_os():
    v = role_vars(DRIVER, "Ubuntu")
    assert (
        evaluate(v, "nvidia_driver_repo_url")
        == "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"
    )
    assert evaluate(v, "nvidia_driver_repo_key_url").endswith("/ubuntu2404/x86_64/3bf863cc.pub")
    assert evaluate(v, "nvidia_driver_repo_origin") == "developer.download.nvidia.com"
    v = role_vars(DRIVER, "Debian")
    v["ansible_facts"]["architecture"] = "aarch64"
    assert evaluate(v, "nvidia_driver_repo_url").endswith("/repos/debian12/sbsa")
    assert evaluate(driver_vars(), "_nvidia_driver_fingerprint") == "20B9E28A55863B1CC6B249469DDB31D48895496E"
    assert evaluate(driver_vars(), "nvidia_driver_skip_reboot") is True


# --------------------------------------------------------------------------- nvidia_driver: versions


def test_madison_resolution_takes_the_repository_and_the_exact_version():
    rows = [
        (p, v, REPO) for p in GPU_570["packages"]["driver"] for v in ("580.95.05-1", "570.195.03-1", "570.172.08-1")
    ]
    rows.append(("nvidia-utils-570", "570.172.08-9", "http://deb.debian.org/debian"))  # another source: ignored
    v = driver_vars(__nvidia_driver_madison=madison(*rows))
    resolved = evaluate(v, "_nvidia_driver_resolved")
    assert resolved == {p: "570.172.08-1" for p in GPU_570["packages"]["driver"]}
    assert evaluate(v, "_nvidia_driver_unresolved") == []
    assert evaluate(v, "_nvidia_driver_install_names") == [f"{p}=570.172.08-1" for p in GPU_570["packages"]["driver"]]


def test_madison_resolution_prefix_is_exact_and_the_refreshed_output_wins():
    # 570.172.080 is not 570.172.08; an epoch is allowed; the newest revision wins; file:/// = file:/.
    rows = [
        ("nvidia-utils-570", "570.172.080-1", REPO),
        ("nvidia-utils-570", "1:570.172.08-2", REPO),
        ("nvidia-utils-570", "570.172.08-1", REPO),
    ]
    v = driver_vars(__nvidia_driver_madison=madison(), __nvidia_driver_madison_fresh=madison(*rows))
    v["llmcluster_nvidia"] = {
        **NVIDIA_CONF,
        "cuda_repo": {**NVIDIA_CONF["cuda_repo"], "url": "file:///srv/llmcluster-sim/cuda/"},
    }
    assert evaluate(v, "_nvidia_driver_resolved") == {"nvidia-utils-570": "1:570.172.08-2"}
    assert evaluate(v, "_nvidia_driver_unresolved") == [
        "nvidia-driver-570-open",
        "nvidia-compute-utils-570",
        "libnvidia-nscq-570",
    ]
    assert evaluate(v, "_nvidia_driver_offered") == {"nvidia-utils-570": [r[1] for r in rows]}


def test_ubuntu_builds_from_the_cuda_repository_only():
    url = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"
    rows = [
        (
            "nvidia-utils-570-server",
            "570.172.08-0ubuntu0.24.04.1",
            "http://archive.ubuntu.com/ubuntu noble-updates/restricted amd64",
        ),
        ("nvidia-utils-570-server", "570.172.08-0ubuntu1", url),
    ]
    gpu = {"driver_version": "570.172.08", "driver_flavor": "open"}
    v = role_vars(DRIVER, "Ubuntu", llmcluster_gpu=gpu, __nvidia_driver_madison=madison(*rows))
    assert evaluate(v, "_nvidia_driver_resolved") == {"nvidia-utils-570-server": "570.172.08-0ubuntu1"}


def _upgrade_vars(installed: str, status: str = "hi ", **extra) -> dict[str, Any]:
    pk = GPU_570["packages"]["driver"]
    rows = [(p, v, REPO) for p in pk for v in ("570.195.03-1", "570.172.08-1")]
    gpu = {**GPU_570, "driver_version": "570.195.03"}
    return driver_vars(
        gpu=gpu,
        __nvidia_driver_madison=madison(*rows),
        __nvidia_driver_dpkg=dpkg(
            *[(status, p, installed) for p in pk],
            ("hi ", "nvidia-fabricmanager-570", installed),
            ("un ", "nvidia-driver-550", ""),
        ),
        **extra,
    )


def test_pending_holds_and_downgrades():
    v = _upgrade_vars("570.172.08-1")
    assert evaluate(v, "_nvidia_driver_pending") == GPU_570["packages"]["driver"]
    assert evaluate(v, "_nvidia_driver_downgrades") == []
    # Driver packages are released for the upgrade; the fabric manager is the other role's.
    assert evaluate(v, "_nvidia_driver_held_family") == GPU_570["packages"]["driver"]
    assert evaluate(_upgrade_vars("570.195.03-1"), "_nvidia_driver_pending") == []
    assert evaluate(_upgrade_vars("570.195.03-1", status="ii "), "_nvidia_driver_pending") == []
    assert evaluate(_upgrade_vars("580.95.05-1"), "_nvidia_driver_downgrades") == [
        f"{p} 580.95.05-1" for p in GPU_570["packages"]["driver"]
    ]


def test_branch_change_releases_and_reports_the_old_branch():
    rows = [
        (p, "580.95.05-1", REPO)
        for p in ("nvidia-driver-580-open", "nvidia-utils-580", "nvidia-compute-utils-580", "libnvidia-nscq-580")
    ]
    old = [("hi ", p, "570.172.08-1") for p in GPU_570["packages"]["driver"]] + [
        ("ii ", "libnvidia-compute-570", "570.172.08-1")
    ]
    gpu = {"driver_version": "580.95.05", "driver_branch": "580", "nvswitch": True}
    v = driver_vars(gpu=gpu, __nvidia_driver_madison=madison(*rows), __nvidia_driver_dpkg=dpkg(*old))
    assert len(evaluate(v, "_nvidia_driver_pending")) == 4
    assert evaluate(v, "_nvidia_driver_held_family") == GPU_570["packages"]["driver"]
    assert sorted(evaluate(v, "_nvidia_driver_other_branches")) == sorted(
        GPU_570["packages"]["driver"] + ["libnvidia-compute-570"]
    )
    # After the install (the repository's packages replaced the old ones): nothing else is reported.
    v["__nvidia_driver_dpkg_after"] = dpkg(*[("ii ", p, "580.95.05-1") for p, _, _ in rows])
    assert evaluate(v, "_nvidia_driver_other_branches") == []
    assert evaluate(v, "_nvidia_driver_pending") == []


def test_gpg_colon_output_gives_the_primary_fingerprints_only():
    out = (
        "pub:-:4096:1:A4B469963BF863CC:1649890520:::-:::scESC::::::23::0:\n"
        "fpr:::::::::EB693B3035CD5710E231E123A4B469963BF863CC:\n"
        "uid:-::::1649890520::0B5B4D26C0D4C5F7F3F2C4B3E4B0A6FE9A2A2B85::cudatools <cudatools@nvidia.com>::::::::::0:\n"
        "sub:-:4096:1:1111111111111111:1649890520::::::e::::::23:\n"
        "fpr:::::::::0000000000000000000000001111111111111111:\n"
    )
    v = driver_vars(__nvidia_driver_gpg_keys=reg(out))
    assert evaluate(v, "_nvidia_driver_key_fingerprints") == ["EB693B3035CD5710E231E123A4B469963BF863CC"]


@pytest.mark.parametrize(
    "smi, dpkg_version, needs",
    [
        (reg("570.195.03\n570.195.03"), "570.195.03-1", False),
        (reg("570.172.08\n570.172.08"), "570.195.03-1", True),  # old module still loaded
        (reg("Failed to initialize NVML: Driver/library version mismatch", rc=18), "570.195.03-1", True),
        (
            reg(
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
                "latest NVIDIA driver is installed and running.",
                rc=9,
            ),
            "570.195.03-1",
            True,
        ),
    ],
)
def test_reboot_detection(smi, dpkg_version, needs):
    v = driver_vars(__nvidia_driver_smi=smi, __nvidia_driver_utils_version=reg(dpkg_version))
    assert evaluate(v, "_nvidia_driver_dpkg_upstream") == dpkg_version.split("-")[0]
    assert evaluate(v, "_nvidia_driver_needs_reboot") is needs


# --------------------------------------------------------------------------- nvidia_driver: files


def render(role: Path, name: str, variables: dict[str, Any]) -> str:
    """A role template, rendered by Ansible's templar (its filters) as the template module does."""
    return template({"ansible_managed": "Ansible managed", **variables}, (role / "templates" / name).read_text())


@pytest.mark.parametrize(
    "url", [REPO, REPO + "/", "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64"]
)
def test_sources_file_is_a_signed_flat_deb822_source(url):
    text = render(
        DRIVER,
        "nvidia-cuda.sources.j2",
        {"nvidia_driver_repo_url": url, "nvidia_driver_keyring_path": "/usr/share/keyrings/k.asc"},
    )
    fields = dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert fields == {
        "Types": "deb",
        "URIs": url.rstrip("/") + "/",
        "Suites": "/",
        "Signed-By": "/usr/share/keyrings/k.asc",
    }


def test_preferences_pin_the_version_first_then_the_origin():
    text = render(
        DRIVER,
        "nvidia-cuda.pref.j2",
        {
            "_nvidia_driver_packages": ["nvidia-utils-570", "nvidia-driver-570-open"],
            "nvidia_driver_version": "570.172.08",
            "nvidia_driver_repo_pin_packages": ["nvidia-*", "libnvidia-*"],
            "nvidia_driver_repo_origin": "",
            "nvidia_driver_repo_pin_priority": 600,
        },
    )
    stanzas = [
        dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith("#"))
        for block in text.strip().split("\n\n")
    ]
    stanzas = [s for s in stanzas if s]
    # apt takes the first entry that matches a package: the exact version must come first.
    assert stanzas == [
        {"Package": "nvidia-utils-570 nvidia-driver-570-open", "Pin": "version 570.172.08-*", "Pin-Priority": "1001"},
        {"Package": "nvidia-* libnvidia-*", "Pin": 'origin ""', "Pin-Priority": "600"},
    ]


def test_unattended_upgrades_blacklist(tmp_path):
    text = render(
        DRIVER,
        "unattended-upgrades.conf.j2",
        {
            "nvidia_driver_unattended_upgrades_blacklist": yaml.safe_load(
                (DRIVER / "defaults" / "main.yml").read_text()
            )["nvidia_driver_unattended_upgrades_blacklist"]
        },
    )
    body = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("//")]
    assert body[0] == "Unattended-Upgrade::Package-Blacklist {" and body[-1] == "};"
    assert body[1:-1] == ['"nvidia-";', '"libnvidia-";', '"xserver-xorg-video-nvidia-";', '"cuda-drivers";']
    if shutil.which("apt-config"):  # apt's own parser reads it as a list
        conf = tmp_path / "51llmcluster-nvidia-unattended-upgrades"
        conf.write_text(text)
        r = subprocess.run(
            ["apt-config", "dump", "Unattended-Upgrade"],
            capture_output=True,
            text=True,
            env={**os.environ, "APT_CONFIG": str(conf)},
            check=False,
        )
        assert r.returncode == 0, r.stderr
        listed = [line for line in r.stdout.splitlines() if line.startswith("Unattended-Upgrade::Package-Blacklist:: ")]
        assert listed == [
            f'Unattended-Upgrade::Package-Blacklist:: "{p}";'
            for p in ("nvidia-", "libnvidia-", "xserver-xorg-video-nvidia-", "cuda-drivers")
        ], r.stdout


# --------------------------------------------------------------------------- the OpenPGP parser
# (The parser itself is tested against gpg in tests/unit/test_hosttools.py.)


def test_key_fingerprints_without_gpg_come_from_the_collection_parser():
    from tests.helpers.hosttool_samples import FPR_ED25519, KEY_ED25519

    # Through Ansible, as the role uses it (slurp's base64 content).
    v = driver_vars(__nvidia_driver_key_content={"content": base64.b64encode(KEY_ED25519.encode()).decode()})
    assert evaluate(v, "_nvidia_driver_key_fingerprints") == [FPR_ED25519]
    v = driver_vars(__nvidia_driver_key_content={"content": base64.b64encode(b"<html>404</html>").decode()})
    assert evaluate(v, "_nvidia_driver_key_fingerprints") == []
    # gpg ran (and printed nothing usable): its output is used, not the file's parse
    v = driver_vars(__nvidia_driver_gpg_keys=reg(""),
                    __nvidia_driver_key_content={"content": base64.b64encode(KEY_ED25519.encode()).decode()})
    assert evaluate(v, "_nvidia_driver_key_fingerprints") == []


# --------------------------------------------------------------------------- nvidia_fabricmanager


def fabric_vars(gpu: dict | None = None, **regs: Any) -> dict[str, Any]:
    return role_vars(
        FABRIC, "Debian", llmcluster_gpu=gpu if gpu is not None else GPU_570, llmcluster_nvidia=NVIDIA_CONF, **regs
    )


def _nvswitches(n: int) -> dict[str, Any]:
    return {"files": [{"path": f"/proc/driver/nvidia-nvswitch/devices/0000:0{i}:00.0"} for i in range(n)]}


@pytest.mark.parametrize(
    "fabric, nvswitches, active",
    [("nvswitch", 4, True), ("nvswitch", 0, False), ("none", 4, False), ("imex", 0, True), ("none", 0, False)],
)
def test_fabric_activity(fabric, nvswitches, active):
    v = fabric_vars({**GPU_570, "fabric": fabric}, __nvidia_fabricmanager_nvswitches=_nvswitches(nvswitches))
    assert evaluate(v, "_nvidia_fabricmanager_active") is active
    assert evaluate(v, "_nvidia_fabricmanager_nvswitches")[:1] == (["0000:00:00.0"] if nvswitches else [])


def test_fabric_default_from_the_nvswitch_flag():
    assert evaluate(fabric_vars({"nvswitch": True}), "nvidia_fabricmanager_fabric") == "nvswitch"
    assert evaluate(fabric_vars({"nvswitch": False}), "nvidia_fabricmanager_fabric") == "none"


@pytest.mark.parametrize(
    "fabric, driver, expected, service",
    [
        ("nvswitch", "570.172.08-1", ["nvidia-fabricmanager-570"], "nvidia-fabricmanager"),
        ("nvswitch", "580.95.05-1", ["nvidia-fabricmanager"], "nvidia-fabricmanager"),
        ("imex", "570.172.08-1", ["nvidia-imex-570"], "nvidia-imex"),
        ("imex", "580.95.05-1", ["nvidia-imex"], "nvidia-imex"),
    ],
)
def test_fabric_packages_follow_the_installed_driver_branch(fabric, driver, expected, service):
    v = fabric_vars({"fabric": fabric}, __nvidia_fabricmanager_dpkg=dpkg(("hi ", "nvidia-utils-" + driver[:3], driver)))
    assert evaluate(v, "_nvidia_fabricmanager_driver_version") == driver.split("-")[0]
    assert evaluate(v, "_nvidia_fabricmanager_packages") == expected
    assert evaluate(v, "_nvidia_fabricmanager_service") == service


def test_fabric_manager_resolves_the_installed_driver_version_not_the_spec():
    rows = [("nvidia-fabricmanager-570", v, REPO) for v in ("570.195.03-1", "570.172.08-1")]
    # The spec says 570.195.03, the installed driver is 570.172.08: the fabric manager follows the driver.
    v = fabric_vars(
        {**GPU_570, "driver_version": "570.195.03"},
        __nvidia_fabricmanager_madison=madison(*rows),
        __nvidia_fabricmanager_dpkg=dpkg(("hi ", "nvidia-utils-570", "570.172.08-1")),
    )
    assert evaluate(v, "_nvidia_fabricmanager_resolved") == {"nvidia-fabricmanager-570": "570.172.08-1"}
    assert evaluate(v, "_nvidia_fabricmanager_pending") == ["nvidia-fabricmanager-570"]
    # In check mode the would-be version is checked; after a real install, the installed one.
    v["ansible_check_mode"] = True
    assert evaluate(v, "_nvidia_fabricmanager_mismatched") == []


def test_fabric_manager_mismatch_is_detected():
    # The driver was upgraded out of band: the installed fabric manager is the old one.
    v = fabric_vars(
        __nvidia_fabricmanager_dpkg=dpkg(
            ("hi ", "nvidia-utils-570", "570.195.03-1"), ("hi ", "nvidia-fabricmanager-570", "570.172.08-1")
        )
    )
    assert evaluate(v, "_nvidia_fabricmanager_installed") == {"nvidia-fabricmanager-570": "570.172.08"}
    mismatched = evaluate(v, "_nvidia_fabricmanager_mismatched")
    assert [(m["key"], m["value"]) for m in mismatched] == [("nvidia-fabricmanager-570", "570.172.08")]
    assert evaluate(v, "_nvidia_fabricmanager_held") == ["nvidia-fabricmanager-570"]


def test_branch_change_removes_the_old_fabric_manager():
    v = fabric_vars(
        {"fabric": "nvswitch"},
        __nvidia_fabricmanager_dpkg=dpkg(
            ("hi ", "nvidia-utils-580", "580.95.05-1"),
            ("hi ", "nvidia-fabricmanager-570", "570.172.08-1"),
            ("ii ", "nvidia-imex-570", "570.172.08-1"),
        ),
    )
    assert evaluate(v, "_nvidia_fabricmanager_packages") == ["nvidia-fabricmanager"]
    assert evaluate(v, "_nvidia_fabricmanager_others") == ["nvidia-fabricmanager-570"]
    assert evaluate(v, "_nvidia_fabricmanager_held") == ["nvidia-fabricmanager-570"]


def test_check_mode_follows_a_pending_driver_upgrade():
    v = fabric_vars(
        __nvidia_fabricmanager_dpkg=dpkg(("hi ", "nvidia-utils-570", "570.172.08-1")),
        nvidia_driver_installed_version="570.195.03",
        ansible_check_mode=True,
    )
    assert evaluate(v, "_nvidia_fabricmanager_driver_pending") is True
    assert evaluate(v, "_nvidia_fabricmanager_driver_version") == "570.195.03"
    v["ansible_check_mode"] = False
    assert evaluate(v, "_nvidia_fabricmanager_driver_pending") is False


SMI_Q = """
==============NVSMI LOG==============

Timestamp                                 : Mon Nov 24 10:00:00 2025
Driver Version                            : 570.172.08
CUDA Version                              : 12.8

Attached GPUs                             : 2
GPU 00000000:18:00.0
    Product Name                          : NVIDIA H200
    Fabric
        State                             : {s0}
        Status                            : {t0}
        CliqueId                          : 0
    Persistence Mode                      : Enabled

GPU 00000000:2A:00.0
    Product Name                          : NVIDIA H200
    Fabric
        State                             : {s1}
        Status                            : {t1}
"""


@pytest.mark.parametrize(
    "states, ready",
    [
        (("Completed", "Success", "Completed", "Success"), True),
        (("In Progress", "N/A", "Completed", "Success"), False),
        (("Completed", "Failure", "Completed", "Success"), False),
        (("Not Started", "N/A", "Not Started", "N/A"), False),
    ],
)
def test_fabric_state_parsing(states, ready):
    out = SMI_Q.format(s0=states[0], t0=states[1], s1=states[2], t1=states[3])
    v = fabric_vars(__nvidia_fabricmanager_fabric_state=reg(out))
    assert evaluate(v, "_nvidia_fabricmanager_gpu_count") == 2
    assert evaluate(v, "_nvidia_fabricmanager_fabric_states") == [
        f"{states[0]}/{states[1]}",
        f"{states[2]}/{states[3]}",
    ]
    assert evaluate(v, "_nvidia_fabricmanager_fabric_ready") is ready


def test_fabric_state_needs_every_gpu():
    out = SMI_Q.format(s0="Completed", t0="Success", s1="Completed", t1="Success")
    out = out.replace(
        "    Fabric\n        State" + " " * 29 + ": Completed\n        Status" + " " * 28 + ": Success\n",
        "",
        1,
    )
    v = fabric_vars(__nvidia_fabricmanager_fabric_state=reg(out))
    assert evaluate(v, "_nvidia_fabricmanager_fabric_ready") is False
    assert (
        evaluate(fabric_vars(__nvidia_fabricmanager_fabric_state=reg("", rc=9)), "_nvidia_fabricmanager_fabric_ready")
        is False
    )


def test_imex_nodes_are_the_pools_rdma_addresses():
    hv = {
        "gb-1": {"llmcluster_addresses": {"mgmt": "10.0.0.1", "rdma": "10.9.0.1"}},
        "gb-2": {"llmcluster_addresses": {"mgmt": "10.0.0.2"}},
    }
    v = fabric_vars(
        {"fabric": "imex"}, llmcluster_pool="gb-pool", groups={"pool_gb_pool": ["gb-1", "gb-2"]}, hostvars=hv
    )
    assert evaluate(v, "nvidia_fabricmanager_imex_nodes") == ["10.9.0.1", "10.0.0.2"]
    text = render(
        FABRIC,
        "nodes_config.cfg.j2",
        {"nvidia_fabricmanager_imex_nodes": ["10.9.0.1", "10.0.0.2"], "llmcluster_pool": "gb-pool"},
    )
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["10.9.0.1", "10.0.0.2"]
