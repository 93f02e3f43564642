#!/usr/bin/env bash
# Install everything llmcluster needs on a fresh Debian/Ubuntu machine: system tools the
# tests use for real (openssl, nftables, systemd-nspawn for the lab) and the Python virtual
# environment in .venv.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# scripts/setup.sh: the project (the lab's system tools, .venv); `make setup`, and first in every target.
# scripts/setup.sh --test-tools: what only the tests use (system test tools, checkov's own venv);
# make test and make test-vm run it after the project's setup. Both modes only install what is missing.
MODE=project
case "${1:-}" in
  "") ;;
  --test-tools) MODE=test-tools ;;
  *) echo "usage: $0 [--test-tools]" >&2; exit 2 ;;
esac
# apt's and pip's output goes to a log (out/setup.log, or $SETUP_LOG), not the screen: one line per
# step here, with its wall time; when a step fails, the log's last lines and its path.
if [ "$MODE" = project ]; then LOG="${SETUP_LOG:-out/setup.log}"; else LOG="${SETUP_LOG:-out/setup-test-tools.log}"; fi
mkdir -p "$(dirname "$LOG")"
: >"$LOG"
# Step times: under make lab ($LLMCLUSTER_PHASES set) each step is also a row "setup / PHASE" of its
# phase table, and the whole setup the row "setup" (scripts/phases.sh; docs/lab.md "First run: phases").
source scripts/phases.sh
SETUP_START="$(phases_now)"
SETUP_DID=0
# logged [--phase PHASE] WHAT CMD...: run CMD with its output in the log (PHASE: the step's name in
# the phase table, default WHAT).
logged() {
  local phase="" what start seconds
  if [ "$1" = --phase ]; then
    phase="$2"
    shift 2
  fi
  what="$1"
  shift
  SETUP_DID=1
  echo -n "setup: $what ..."
  echo "=== $what: $*" >>"$LOG"
  start="$(phases_now)"
  if ! "$@" >>"$LOG" 2>&1; then
    echo " failed after $(phases_since "$start") s"
    echo "setup: FAILED: $what; the last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    echo "setup: the whole log: $LOG" >&2
    exit 1
  fi
  seconds="$(phases_since "$start")"
  echo " $seconds s"
  phases_add "setup / ${phase:-$what}" "$seconds" || true
}
# Two sets of system tools, each installed in one apt transaction when something is missing:
# - the lab's (always): what `make lab` runs on this machine (lab up, converge, verify);
# - the test tools' (`--test-tools`, make test and make test-vm): what only the tests and the audits use.
# A fresh machine's `make lab` so waits for no test tool (issue 18: the first run's time).
need_apt=()
new_sshd=0
if [ "$MODE" = project ]; then
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
  # Ansible and the verification suite reach the lab's hosts over SSH.
  command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
  # The lab's base image (llmcluster/lab/image.py) is built with debootstrap.
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
  # The lab boots its hosts of kind nspawn (stacks/Pulumi.lab.yaml: every host) with systemd-nspawn.
  command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
  # The verification suite: curl for the gateway checks; its audit collector runs HAProxy (the mTLS
  # terminator) and systemd-journal-remote in a lab probe namespace (llmcluster/verify/audit.py), and the
  # gateway's audit trail tests run journald, journal-upload and journal-remote for real
  # (tests/roles/test_audit_log_local.py).
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
  [ -x /lib/systemd/systemd-journal-remote ] || [ -x /usr/lib/systemd/systemd-journal-remote ] || need_apt+=(systemd-journal-remote)
else
  # The lab's VM hosts (llmcluster/lab/vm.py; the VM tier, make test-vm): qemu under TCG.
  command -v qemu-system-x86_64 >/dev/null 2>&1 || need_apt+=(qemu-system-x86)
  command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
  # The third-party auditors of docs/security.md (scripts/security-audit.sh): testssl.sh, ssh-audit,
  # nmap, lynis (sslyze comes from PyPI, pyproject's test extra).
  command -v testssl >/dev/null 2>&1 || need_apt+=(testssl.sh)
  command -v ssh-audit >/dev/null 2>&1 || need_apt+=(ssh-audit)
  command -v nmap >/dev/null 2>&1 || need_apt+=(nmap)
  command -v lynis >/dev/null 2>&1 || [ -x /usr/sbin/lynis ] || need_apt+=(lynis)
  # Monitoring (docs/observability.md): promtool check|test rules and amtool check-config run in the tests
  # (tests/unit/test_monitoring.py); node_exporter's metric names were checked against Debian's.
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
  # llmcluster diagram (and the README's lab picture) lays out its topology with Graphviz's dot.
  command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
  # The nvme_raid role's safety rules run against loop devices (tests/roles/test_nvme_raid_local.py):
  # a GPT by sfdisk, xfs, and mdadm --examine of a hand-written md superblock (no md in the kernel needed).
  command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || need_apt+=(fdisk)
  command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || need_apt+=(xfsprogs)
  command -v mdadm >/dev/null 2>&1 || [ -x /usr/sbin/mdadm ] || need_apt+=(mdadm)
  # The common role's sshd baseline runs in a real sshd on loopback, audited by ssh-audit
  # (tests/roles/test_common_hardening_local.py). Only the binary is wanted: an SSH server that
  # setup installs is stopped and disabled again below (this machine had none before).
  [ -x /usr/sbin/sshd ] || { need_apt+=(openssh-server); new_sshd=1; }
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    logged "apt-get update" apt-get update -q
    logged --phase "apt-get install" "installing ${need_apt[*]} (apt-get)" apt-get install -y -q --no-install-recommends "${need_apt[@]}"
    if [ "$new_sshd" = 1 ] && [ -d /run/systemd/system ]; then
      systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing ${need_apt[*]}; install them (as root: apt-get install ${need_apt[*]})" >&2
    echo "setup: the tests that need them will be skipped with that reason" >&2
  fi
fi

# Under make lab (LLMCLUSTER_LAB_IMAGE_BESIDE=1, as root): the lab's base image is built now, in the
# background, while pip fills the venv; both wait mostly on downloads and the disk. The build needs only
# the standard library (python3 -m llmcluster.lab.image); `lab up` finds the image or waits for it on the
# image cache's lock, and builds it itself if this build failed (its log: lab-image.log beside setup's log).
if [ "$MODE" = project ] && [ "${LLMCLUSTER_LAB_IMAGE_BESIDE:-}" = 1 ] && [ "$(id -u)" = 0 ]; then
  IMAGE_LOG="$(dirname "$LOG")/lab-image.log"
  "$PYTHON" -m llmcluster.lab.image --phase "setup / base image, built beside it" >"$IMAGE_LOG" 2>&1 &
  echo "setup: building the lab's base image beside it (log: $IMAGE_LOG)"
fi
if [ "$MODE" = project ]; then
  if [ ! -x .venv/bin/python ]; then
    logged --phase "python venv" "creating .venv" "$PYTHON" -m venv .venv
  fi
  logged --phase "pip upgrade" "upgrading pip in .venv" .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip
  # --no-compile: pip byte-compiles every file it installs by default, most of them never imported (the
  # ansible package's ~100 collections, of which the roles use four). Python compiles a module when it
  # is first imported instead. Measured: docs/lab.md "First run: phases".
  logged --phase "pip install" "installing Python packages (pinned in pyproject.toml)" \
    .venv/bin/python -m pip install --disable-pip-version-check --no-compile -e '.[test]'
  touch .venv/.installed
else
  # checkov (the Kubernetes manifests' policy linter, tests/unit/test_kubernetes_validate.py) pins many
  # packages of its own: it gets its own virtualenv, never the project's.
  CHECKOV_VERSION=3.3.30
  if [ ! -x .tools/checkov/bin/checkov ] || ! .tools/checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
    logged --phase "checkov venv" "creating .tools/checkov" "$PYTHON" -m venv .tools/checkov
    logged --phase "checkov install" "installing checkov $CHECKOV_VERSION into .tools/checkov" \
      .tools/checkov/bin/python -m pip install --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
fi
SETUP_SECONDS="$(phases_since "$SETUP_START")"
if [ "$MODE" = project ]; then
  phases_add setup "$SETUP_SECONDS" || true
  echo "setup: done in $SETUP_SECONDS s (the output of apt and pip: $LOG)"
elif [ "$SETUP_DID" = 1 ]; then
  echo "setup: test tools done in $SETUP_SECONDS s (the output of apt and pip: $LOG)"
fi
