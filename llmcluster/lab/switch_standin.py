"""SIMULATION (lab only): a stand-in for the switch operating systems' command lines.

The lab has no switches. To run :class:`~llmcluster.components.switches.SwitchConfigProvider`
for real — SSH, SFTP upload, the per-OS apply commands, exit statuses, stderr — this module
installs, on a lab host, small shims named like the commands the provider runs on real
switches, so the provider's commands stay exactly the production ones:

==================================================  =========================================
provider command (real switch)                      what the stand-in does
==================================================  =========================================
``nv config replace <file>`` (Cumulus NVUE)        parse the file as NVUE, keep it as pending
``nv config apply -y``                              pending -> running
``nv config show -o yaml``                          print the running configuration
``sudo config load -y <file>`` (SONiC)              parse config_db.json, *merge* it into running
``sudo config reload -y <file>``                    parse, *replace* running
``sudo config save -y``                             running -> startup
``show runningconfiguration all``                   print the running config_db (sorted JSON)
``configure replace flash:<file>`` (Arista EOS)     parse ``/mnt/flash/<file>`` as EOS, -> running
``copy running-config startup-config``              running -> startup
``show running-config``                             print the running configuration
==================================================  =========================================

"Parse" is the project's real parser, from the switch OS registry (``Nos.parse`` in
:mod:`llmcluster.nos`: NVUE YAML structure, the SONiC config_db JSON schema, EOS through
hier_config), so a broken configuration is refused with the parser's message on stderr and
exit status 1, as a switch would refuse it. The parser and its Python dependencies are copied
to the host (the lab hosts run the same Debian Python as this project). File names (the
extension) and format names come from the registry too; the shims below are the only place
that says which OS's command line a command belongs to. The "running configuration" is a file
under ``/etc/llmcluster-switch/``; every shim call is appended to
``/etc/llmcluster-switch/commands.log``. Nothing here is a switch: no forwarding, no ASIC,
no real NVUE/SONiC/EOS semantics beyond what is listed above.

The host side of this module (everything below :data:`HOST_SIDE`) uses only the standard
library; the controller side (:func:`install`, :func:`uninstall`, :func:`connect`) uses paramiko.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STANDIN_DIR = "/usr/local/lib/llmcluster-switch-standin"
SITE_DIR = f"{STANDIN_DIR}/site"
SCRIPT = f"{STANDIN_DIR}/standin.py"
STATE_DIR = "/etc/llmcluster-switch"
FLASH_DIR = "/mnt/flash"
BIN_DIR = "/usr/local/bin"
SHIMS = ("nv", "config", "show", "configure", "copy")
LOG = f"{STATE_DIR}/commands.log"
LABEL = "llmcluster switch stand-in (a lab simulation, not a switch)"
#: What the parsers of :mod:`llmcluster.nos` import, copied to the host.
BUNDLE_MODULES = (
    "llmcluster", "yaml", "netaddr", "jsonschema", "jsonschema_specifications", "referencing", "rpds", "attr",
    "attrs", "typing_extensions", "hier_config",
)
SHIM = """#!/bin/sh
# {label}: stands in for the switch OS command '{name}' (llmcluster/lab/switch_standin.py)
exec /usr/bin/python3 -I {script} {name} "$@"
"""


# --------------------------------------------------------------------------- controller side


def bundle() -> bytes:
    """A tar.gz of the parser and its dependencies, as installed for this interpreter."""
    import importlib.util
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name in BUNDLE_MODULES:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise RuntimeError(f"switch stand-in: module {name} is not installed here")
            origin = Path(spec.origin)
            path = origin.parent if origin.name == "__init__.py" else origin
            tar.add(str(path), arcname=path.name,
                    filter=lambda t: None if "__pycache__" in t.name or t.name.endswith(".pyc") else t)
    return buf.getvalue()


def connect(address: str, key_file: str | os.PathLike, username: str = "root", timeout: float = 15.0,
            port: int = 22):
    """A paramiko client to a lab host (lab hosts' keys are throwaway: any host key is accepted)."""
    import paramiko

    class AcceptAny(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            return None

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(AcceptAny())
    client.connect(address, port=port, username=username, key_filename=str(key_file), look_for_keys=False,
                   allow_agent=False,
                   timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    return client


def _run(client, command: str, timeout: float = 120.0) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode()
    err = stderr.read().decode()
    rc = stdout.channel.recv_exit_status()
    if rc != 0:
        raise RuntimeError(f"switch stand-in: `{command}` failed ({rc}): {err.strip() or out.strip()}")
    return out


def install(client) -> None:
    """Install the stand-in on the host behind ``client`` (idempotent) and check that it parses."""
    import shlex

    _run(client, f"mkdir -p {SITE_DIR} {STATE_DIR} {FLASH_DIR} && chmod 0700 {STATE_DIR}")
    sftp = client.open_sftp()
    try:
        tmp = "/tmp/llmcluster-switch-standin.tar.gz"
        with sftp.open(tmp, "wb") as f:
            f.write(bundle())
        with sftp.open(SCRIPT, "w") as f:
            f.write(Path(__file__).read_bytes())
        for name in SHIMS:
            path = f"{BIN_DIR}/{name}"
            with sftp.open(path, "w") as f:
                f.write(SHIM.format(label=LABEL, name=name, script=SCRIPT).encode())
            sftp.chmod(path, 0o755)
    finally:
        sftp.close()
    _run(client, f"tar -xzf {tmp} -C {SITE_DIR} && rm -f {tmp}")
    _run(client, f"/usr/bin/python3 -I {shlex.quote(SCRIPT)} --self-test")


def uninstall(client) -> None:
    """Remove the stand-in, its state and the staged files it created."""
    shims = " ".join(f"{BIN_DIR}/{n}" for n in SHIMS)
    _run(client, f"rm -rf {STANDIN_DIR} {STATE_DIR} {shims} {FLASH_DIR}/llmcluster-* /tmp/llmcluster-*; "
                 f"rmdir {FLASH_DIR} 2>/dev/null; true")


def _nos(name: str):
    """The registry entry of switch OS ``name`` (on a lab host, from the bundle: see :func:`main`)."""
    from llmcluster.nos import get

    return get(name)


def running_path(nos: str) -> str:
    return f"{STATE_DIR}/running.{_nos(nos).extension}"


def startup_path(nos: str) -> str:
    return f"{STATE_DIR}/startup.{_nos(nos).extension}"


# --------------------------------------------------------------------------- host side

HOST_SIDE = True  # everything below runs on the lab host, with the standard library only


class StandinError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StandinError(f"{path}: no such file") from None


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _validate(path: str, nos: str) -> str:
    """The file's text when the project's real parser accepts it as ``nos``; else StandinError."""
    from llmcluster.nos import ConfigParseError

    text = _read(path)
    switch_os = _nos(nos)
    try:
        switch_os.parse(text)
    except ConfigParseError as exc:
        raise StandinError(f"{path}: not a valid {switch_os.format_name} configuration: {exc}") from None
    return text


def _usage(tool: str, args: list[str]) -> StandinError:
    return StandinError(f"{tool}: unsupported command '{' '.join(args)}' ({LABEL})", code=2)


def _nv(args: list[str]) -> str:
    pending = f"{STATE_DIR}/pending.{_nos('cumulus').extension}"
    if args[:2] == ["config", "replace"] and len(args) == 3:
        _write(pending, _validate(args[2], "cumulus"))
        return ""
    if args[:2] == ["config", "apply"]:
        if not os.path.exists(pending):
            return "Warning: no pending configuration to apply\n"
        os.replace(pending, running_path("cumulus"))
        return "applied\n"
    if args[:2] == ["config", "show"]:
        return Path(running_path("cumulus")).read_text() if os.path.exists(running_path("cumulus")) else ""
    raise _usage("nv", args)


def _load_db(path: str) -> dict:
    return json.loads(_read(path)) if os.path.exists(path) else {}


def _config(args: list[str]) -> str:
    flags = [a for a in args if a.startswith("-")]
    words = [a for a in args if not a.startswith("-")]
    if words[:1] in (["load"], ["reload"]) and len(words) == 2 and "-y" in flags:
        new = json.loads(_validate(words[1], "sonic"))
        if words[0] == "reload":
            db = new
        else:  # SONiC `config load`: entries are added/updated field by field, nothing is removed
            db = _load_db(running_path("sonic"))
            for table, entries in new.items():
                for key, fields in entries.items():
                    db.setdefault(table, {}).setdefault(key, {}).update(fields)
        _write(running_path("sonic"), json.dumps(db, indent=1, sort_keys=True) + "\n")
        return ""
    if words == ["save"] and "-y" in flags:
        _write(startup_path("sonic"), _read(running_path("sonic")))
        return ""
    raise _usage("config", args)


def _show(args: list[str]) -> str:
    if args == ["runningconfiguration", "all"]:
        return json.dumps(_load_db(running_path("sonic")), indent=1, sort_keys=True) + "\n"
    if args == ["running-config"]:
        path = running_path("eos")
        return Path(path).read_text() if os.path.exists(path) else ""
    raise _usage("show", args)


def _configure(args: list[str]) -> str:
    if len(args) == 2 and args[0] == "replace":
        url = args[1]
        if url.startswith("flash:"):
            path = f"{FLASH_DIR}/{url.removeprefix('flash:').lstrip('/')}"
        elif url.startswith("file:"):
            path = url.removeprefix("file:")
        else:
            raise StandinError(f"configure replace: unsupported URL {url!r} (flash: or file:)")
        _write(running_path("eos"), _validate(path, "eos"))
        return ""
    raise _usage("configure", args)


def _copy(args: list[str]) -> str:
    if args == ["running-config", "startup-config"]:
        _write(startup_path("eos"), _read(running_path("eos")))
        return "Copy completed successfully.\n"
    raise _usage("copy", args)


TOOLS = {"nv": _nv, "config": _config, "show": _show, "configure": _configure, "copy": _copy}


#: Texts no switch OS accepts (valid YAML, JSON or CLI lines: each reaches some parser's library).
NOT_A_CONFIG = ("- header: {}\n", "{}", "hostname x\n")


def _self_test() -> str:
    """Every registered parser imports its libraries from the bundle and refuses what is not a configuration."""
    from llmcluster.nos import NOSES, ConfigParseError

    for nos in NOSES:
        for bad in NOT_A_CONFIG:
            try:
                _nos(nos).parse(bad)
            except ConfigParseError:
                continue
            raise StandinError(f"self-test: the {nos} parser accepted an invalid configuration {bad!r}")
    return "ok\n"


def main(argv: list[str]) -> int:
    if SITE_DIR not in sys.path:  # the bundle: llmcluster.nos and what its parsers import
        sys.path.insert(0, SITE_DIR)
    if argv == ["--self-test"]:
        try:
            sys.stdout.write(_self_test())
            return 0
        except Exception as exc:  # the bundle does not import here: say why
            sys.stderr.write(f"{LABEL}: self-test failed: {exc.__class__.__name__}: {exc}\n")
            return 1
    if not argv or argv[0] not in TOOLS:
        sys.stderr.write(f"{LABEL}: unknown tool {argv[:1]}\n")
        return 2
    tool, args = argv[0], argv[1:]
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(" ".join([tool, *args]) + "\n")
    try:
        sys.stdout.write(TOOLS[tool](args))
        return 0
    except StandinError as exc:
        sys.stderr.write(f"{tool}: {exc}\n")
        return exc.code
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{tool}: {exc.__class__.__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
