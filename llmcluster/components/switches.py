"""Switch configurations that ``pulumi up`` pushes over SSH: a ``pulumi.dynamic`` provider.

One :class:`SwitchConfig` resource per switch carries the switch's rendered configuration
text (:func:`llmcluster.render.switch.render_switch`) as an input, so the state always holds
the text last applied and a change of even one line is a diff:

* :meth:`SwitchConfigProvider.diff` reports changes only when the rendered text, the
  connection target or the access settings changed; it computes a unified diff of the
  configuration lines (``difflib``) and returns it on the result (:class:`SwitchDiff`,
  ``config_diff`` / ``detailed_diff``). Pulumi's Python dynamic-provider protocol has no
  detailed-diff field (the provider host drops anything but changes/replaces), so on the
  command line the diff comes from the ``config`` input itself, a plain (non-secret)
  string: Pulumi's display prints a changed multi-line string as a line diff with context
  (EOS), and a string that decodes as JSON or YAML (SONiC ``config_db.json``, the NVUE
  document) as a diff of the decoded document, key by key.
* :meth:`~SwitchConfigProvider.create` / :meth:`~SwitchConfigProvider.update` upload the
  text with SFTP to the switch OS's staging directory and run its apply sequence, both from
  the switch OS registry (``Nos.procedure`` in :mod:`llmcluster.nos`, whose OS modules say
  why each sequence is what it is: Cumulus ``nv config replace`` + ``apply`` replaces the
  whole configuration, SONiC ``config load`` + ``save`` merges tables, EOS ``configure
  replace flash:<file>`` + ``copy running-config startup-config`` replaces atomically).

  Each command's exit status is checked; a failure raises :class:`SwitchApplyError` with
  the command and its stderr. The outputs record the sha256 of the applied text
  (``sha256``) and of the running configuration the switch reports afterwards
  (``runningSha256``).
* :meth:`~SwitchConfigProvider.delete` removes only the staged file and **leaves the
  switch's configuration alone**: deleting a resource (a renamed switch, a destroyed stack,
  a move to ``render-only``) must never wipe a production switch, which would cut every host
  behind it off the network. Decommissioning a switch is a deliberate act on the switch.
* :meth:`~SwitchConfigProvider.read` (``pulumi refresh``) re-reads the running
  configuration's hash; when it no longer matches what was applied, the refreshed ``config``
  becomes a drift marker, so the next ``pulumi up`` shows the whole configuration as a
  change and pushes it again.

Host keys: a pinned fingerprint (``SHA256:...`` as ``ssh-keygen -lf`` prints it,
``baremetal.switch_access.host_keys``) is checked when given; otherwise the key must be in
``~/.ssh/known_hosts`` (or ``/etc/ssh/ssh_known_hosts``); ``insecure_accept_host_key``
accepts any key and is only ever an explicit setting (the lab uses it). Credentials are
Pulumi secrets (:mod:`llmcluster.spec.secrets`): the password or private key inputs are
secret Outputs, so the state holds them encrypted and no plain output carries them.

The provider runs in Pulumi's dynamic-provider host process: the provider object is pickled
(dill) by reference to this importable module, which the host imports. It depends on nothing
but the standard library, Pulumi, :mod:`llmcluster.nos` (the switch OS registry, standard
library only at import time; a test checks it) and (lazily) paramiko.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import io
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from llmcluster.nos import NOSES
from llmcluster.nos import get as get_nos

RESOURCE_TYPE = "pulumi-python:dynamic/llmcluster:SwitchConfig"
STAGE_PREFIX = "llmcluster-"
#: Inputs that decide where and what is applied: a change re-applies the configuration.
APPLY_KEYS = ("config", "switch", "nos", "host", "port", "fileName")
#: Inputs that only change how the provider logs in: a change is recorded, nothing is pushed.
ACCESS_KEYS = ("username", "password", "privateKey", "hostKeyFingerprint", "insecureAcceptHostKey",
               "timeoutSeconds")
#: Outputs the provider computes.
COMPUTED_KEYS = ("sha256", "runningSha256", "stagedPath")
DRIFT_MARKER = ("# llmcluster: the running configuration of {switch} changed outside Pulumi\n"
                "# (running sha256 {running}, applied {applied}): `pulumi up` re-applies it\n")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def staged_path(nos: str, file_name: str) -> str:
    """Where the provider uploads ``file_name`` on a switch running ``nos``."""
    return posixpath.join(get_nos(nos).procedure.stage_dir, f"{STAGE_PREFIX}{file_name}")


def running_sha256(nos: str, running: str) -> str:
    """The hash of a running configuration, normalised by its switch OS (drift detection)."""
    return sha256_text(get_nos(nos).procedure.normalise(running))


def config_diff(old: str, new: str, switch: str = "switch") -> str:
    """Unified diff of two configuration texts (what ``pulumi preview`` would change on the switch)."""
    return "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
        fromfile=f"{switch} (applied)", tofile=f"{switch} (rendered)", n=2,
    ))


def host_key_fingerprint(key: Any) -> str:
    """``SHA256:<base64>`` of a paramiko key, as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SwitchApplyError(Exception):
    """A switch could not be reached or refused the configuration (the message says which and why)."""


@dataclass
class SwitchDiff(DiffResult):
    """A DiffResult that also carries the unified diff of the configuration lines."""

    changes: bool | None = None
    replaces: list[str] | None = None
    stables: list[str] | None = None
    delete_before_replace: bool | None = None
    config_diff: str = ""
    detailed_diff: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- SSH


def _load_private_key(text: str):
    import paramiko

    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise SwitchApplyError("the switch private key is not an unencrypted Ed25519, ECDSA or RSA key in "
                           f"OpenSSH/PEM format ({'; '.join(errors)})")


def _host_key_policy(switch: str, pinned: str | None, insecure: bool):
    import paramiko

    class Pinned(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            got = host_key_fingerprint(key)
            if got.rstrip("=") != (pinned or "").rstrip("="):
                raise SwitchApplyError(
                    f"{switch} ({hostname}): host key {key.get_name()} {got} does not match the pinned "
                    f"fingerprint {pinned} (baremetal.switch_access.host_keys.{switch}): refusing to log in")

    class Unknown(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            raise SwitchApplyError(
                f"{switch} ({hostname}): host key {key.get_name()} {host_key_fingerprint(key)} is not in "
                f"known_hosts: add it (ssh-keyscan), pin it in baremetal.switch_access.host_keys.{switch}, "
                "or (labs only) set baremetal.switch_access.insecure_accept_host_key")

    class AcceptAny(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            return None  # explicitly insecure (lab): accept, do not remember

    if pinned:
        return Pinned()
    return AcceptAny() if insecure else Unknown()


def connect(props: Mapping[str, Any]):
    """An authenticated ``paramiko.SSHClient`` to the switch of ``props``."""
    import os

    import paramiko

    switch, host, port = props["switch"], props["host"], int(props.get("port") or 22)
    pinned = props.get("hostKeyFingerprint") or None
    client = paramiko.SSHClient()
    if not pinned:
        for path in ("/etc/ssh/ssh_known_hosts", os.path.expanduser("~/.ssh/known_hosts")):
            if os.path.isfile(path):
                client.load_system_host_keys(path)  # read-only: never written back
    client.set_missing_host_key_policy(_host_key_policy(switch, pinned, bool(props.get("insecureAcceptHostKey"))))
    pkey = _load_private_key(props["privateKey"]) if props.get("privateKey") else None
    timeout = float(props.get("timeoutSeconds") or 30)
    try:
        client.connect(host, port=port, username=props.get("username") or None,
                       password=props.get("password") or None, pkey=pkey, look_for_keys=False,
                       allow_agent=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    except SwitchApplyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SwitchApplyError(
            f"{switch} ({host}:{port}): host key {host_key_fingerprint(exc.key)} differs from the known_hosts "
            f"entry {host_key_fingerprint(exc.expected_key)}: possible man-in-the-middle, refusing to log in"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SwitchApplyError(f"{switch} ({host}:{port}): authentication as {props.get('username')!r} failed "
                               f"({exc}): check the llmcluster-switches credentials") from None
    except (OSError, paramiko.SSHException) as exc:
        client.close()
        raise SwitchApplyError(f"{switch} ({host}:{port}): cannot connect over SSH: "
                               f"{exc.__class__.__name__}: {exc}") from None
    return client


def run(client, command: str, timeout: float) -> tuple[int, str, str]:
    """Run one command; return (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode("utf-8", "replace")
    err = stderr.read().decode("utf-8", "replace")
    return stdout.channel.recv_exit_status(), out, err


def _check(switch: str, command: str, result: tuple[int, str, str]) -> str:
    rc, out, err = result
    if rc != 0:
        detail = (err.strip() or out.strip() or "(no output)")[-2000:]
        raise SwitchApplyError(f"{switch}: `{command}` failed with exit status {rc}: {detail}")
    return out


# --------------------------------------------------------------------------- the provider


def _public(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if not k.startswith("__")}


class SwitchConfigProvider(ResourceProvider):
    """CRUD of one switch's configuration over SSH (see the module docstring)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        nos = news.get("nos")
        if nos not in NOSES:
            failures.append(CheckFailure("nos", f"{nos!r} is not a supported switch OS ({', '.join(NOSES)})"))
        for key in ("switch", "host", "username", "fileName"):
            if not isinstance(news.get(key), str) or not news.get(key):
                failures.append(CheckFailure(key, "missing: a non-empty string is required"))
        if not isinstance(news.get("config"), str) or not news["config"].strip():
            failures.append(CheckFailure("config", "the rendered configuration is empty"))
        port = news.get("port")
        if not isinstance(port, (int, float)) or not 1 <= int(port) <= 65535:
            failures.append(CheckFailure("port", f"{port!r} is not a TCP port"))
        if not news.get("password") and not news.get("privateKey"):
            failures.append(CheckFailure("password", "no switch credentials: set llmcluster-switches:password "
                                                     "or llmcluster-switches:privateKey (secrets)"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> SwitchDiff:
        changed = [k for k in (*APPLY_KEYS, *ACCESS_KEYS) if olds.get(k) != news.get(k)]
        text = config_diff(olds.get("config") or "", news.get("config") or "", news.get("switch") or "switch")
        return SwitchDiff(changes=bool(changed), config_diff=text,
                          detailed_diff={k: "update" for k in changed})

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["switch"], self._apply(props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if any(olds.get(k) != news.get(k) for k in APPLY_KEYS):
            return UpdateResult(self._apply(news))
        # Only how we log in changed: record it, push nothing.
        outs = _public(news)
        outs.update({k: olds.get(k) for k in COMPUTED_KEYS})
        return UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Remove the staged file; the switch keeps its configuration (never wipe a production switch)."""
        path = props.get("stagedPath") or staged_path(props["nos"], props["fileName"])
        try:
            client = connect(props)
        except SwitchApplyError:
            return  # the switch is gone or unreachable: nothing of ours to undo on it
        try:
            sftp = client.open_sftp()
            try:
                sftp.remove(path)
            except OSError:
                pass  # already gone
            finally:
                sftp.close()
        finally:
            client.close()

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not props.get("host") or props.get("nos") not in NOSES:
            return ReadResult(id_, props)
        outs = _public(props)
        client = connect(props)
        try:
            command = get_nos(props["nos"]).procedure.running
            running = _check(props["switch"], command, run(client, command, float(props.get("timeoutSeconds") or 30)))
        finally:
            client.close()
        now = running_sha256(props["nos"], running)
        applied = props.get("runningSha256")
        if applied and now != applied:
            outs["config"] = DRIFT_MARKER.format(switch=props["switch"], running=now[:12], applied=applied[:12])
        outs["runningSha256"] = now
        return ReadResult(id_, outs)

    # ------------------------------------------------------------------ push
    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        switch, nos, text = props["switch"], props["nos"], props["config"]
        procedure = get_nos(nos).procedure
        path = staged_path(nos, props["fileName"])
        timeout = float(props.get("timeoutSeconds") or 30)
        client = connect(props)
        try:
            sftp = client.open_sftp()
            try:
                with sftp.open(path, "w") as f:
                    f.write(text.encode("utf-8"))
                sftp.chmod(path, 0o600)
            except OSError as exc:
                raise SwitchApplyError(f"{switch}: cannot upload the configuration to {path}: {exc}") from None
            finally:
                sftp.close()
            for command in procedure.commands(path):
                _check(switch, command, run(client, command, timeout))
            running = _check(switch, procedure.running, run(client, procedure.running, timeout))
        finally:
            client.close()
        outs = _public(props)
        outs.update(sha256=sha256_text(text), stagedPath=path,
                    runningSha256=running_sha256(nos, running))
        return outs


# --------------------------------------------------------------------------- the resource


@dataclass(frozen=True)
class SwitchConfigArgs:
    switch: str
    nos: str
    host: str
    config: str
    file_name: str
    username: str
    password: pulumi.Input[str] | None = None
    private_key: pulumi.Input[str] | None = None
    port: int = 22
    host_key_fingerprint: str | None = None
    insecure_accept_host_key: bool = False
    timeout_s: int = 30


class SwitchConfig(pulumi.dynamic.Resource, module="llmcluster", name="SwitchConfig"):
    """One switch's configuration, applied over SSH (type ``pulumi-python:dynamic/llmcluster:SwitchConfig``)."""

    sha256: pulumi.Output[str]
    runningSha256: pulumi.Output[str]
    stagedPath: pulumi.Output[str]

    def __init__(self, name: str, args: SwitchConfigArgs, opts: pulumi.ResourceOptions | None = None):
        def secret(value):
            return None if value is None else pulumi.Output.secret(value)

        props: dict[str, Any] = {
            "switch": args.switch, "nos": args.nos, "host": args.host, "port": args.port,
            "username": args.username, "password": secret(args.password), "privateKey": secret(args.private_key),
            "hostKeyFingerprint": args.host_key_fingerprint, "insecureAcceptHostKey": args.insecure_accept_host_key,
            "timeoutSeconds": args.timeout_s, "fileName": args.file_name, "config": args.config,
            "sha256": None, "runningSha256": None, "stagedPath": None,
        }
        super().__init__(SwitchConfigProvider(), name, props, opts)
