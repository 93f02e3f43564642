"""The model store: manifests of model weights, verifying a tree, and staging a model in from a
mirror (``llmcluster model manifest|verify|stage``).

The manifest format, the verification and its refusals live in one standard-library module of the
``llmcluster.hosts`` collection (:mod:`...module_utils.model_manifest`), which is also the GPU
nodes' ``model-verify`` script: the controller and the node judge a tree with the same code.

Stage-in (:func:`stage`) copies the files of a manifest from a SOURCE into a folder:

* SOURCE: a local folder; an ``http(s)://`` mirror (file URL = base + ``/`` + relative path,
  percent-encoded); ``s3://bucket/prefix`` (boto3: endpoint from ``--s3-endpoint-url`` or
  ``AWS_ENDPOINT_URL``, credentials by boto3's usual chain).
* Every file is streamed to a temporary file beside its destination while its size and sha256 are
  checked; a file whose bytes differ from the manifest is refused (the source is corrupt) and
  its temporary file removed; a good file is fsynced and renamed into place (no-clobber link, or
  an atomic replace with ``--replace``).
* Refused before anything is written: a destination file of the manifest that exists with other
  bytes (unless ``--replace``), anything in the destination that is not in the manifest or is not
  a regular file (the staged tree would fail verification, and stage never deletes what it did not
  write). An existing file with the manifest's size and sha256 is kept and counted as present.
* On a failure, the files and folders this run created are removed again (``keep_partial``: the
  fully verified files are kept, so that a re-run fetches only the rest); what was there before
  stays as it was (with ``--replace``, a wrong file that was already replaced stays replaced).
* At the end the whole tree is verified against the manifest (exactly the nodes' check).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    model_manifest as MM,
)
from llmcluster.errors import LLMClusterError, Problem, SpecError

#: ``llmcluster model verify`` / ``stage``: the tree does not match its manifest (as ``llmcluster verify``).
EXIT_MISMATCH = 5
#: ``llmcluster model stage``: the source did not deliver a file of the manifest (missing there,
#: corrupt, unreachable); nothing this run wrote is left behind.
EXIT_FETCH = 6
STAGE_SUFFIX = ".llmcluster-stage"
BUFFER_BYTES = MM.BUFFER_BYTES


class StageError(LLMClusterError):
    """A file of the manifest could not be fetched as the manifest says: ``<rel>: <why>`` lines."""

    exit_code = EXIT_FETCH

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{p}: {m}" if p else m for p, m in self.problems]


class Mismatch(LLMClusterError):
    """The tree does not match the manifest (a :class:`MM.Report` with problems)."""

    exit_code = EXIT_MISMATCH

    def __init__(self, report: MM.Report):
        self.report = report
        super().__init__("\n".join(report.lines()))


def spec_error(exc: MM.ModelStoreError) -> SpecError:
    return SpecError([Problem(w, m) for w, m in exc.problems])


# --------------------------------------------------------------------------- manifest and verify


def load(path: str | os.PathLike) -> MM.Manifest:
    try:
        return MM.load_manifest(os.fspath(path))
    except MM.ModelStoreError as exc:
        raise spec_error(exc) from None


def make_manifest(root: Path, out: Path | None, *, workers: int | None = None, model: str | None = None,
                  version: str | None = None, replace: bool = False) -> MM.Manifest:
    """The manifest of ``root``; written to ``out`` (atomically; an existing file only with ``replace``)."""
    try:
        if out is not None and os.path.lexists(out) and not replace:
            raise MM.ModelStoreError("--out", f"{out}: exists: pass --replace to replace it")
        exclude = MM.path_within(os.fspath(root), os.fspath(out)) if out is not None else set()
        manifest = MM.build_manifest(os.fspath(root), workers, model, version, exclude=exclude)
        if out is not None:
            MM.write_manifest(manifest, os.fspath(out), force=replace, flag="--replace")
    except MM.ModelStoreError as exc:
        raise spec_error(exc) from None
    return manifest


def verify(root: Path, manifest: MM.Manifest, manifest_path: Path | None = None, *,
           workers: int | None = None) -> MM.Report:
    exclude = MM.path_within(os.fspath(root), os.fspath(manifest_path)) if manifest_path else set()
    try:
        return MM.verify(os.fspath(root), manifest, workers, exclude=exclude)
    except MM.ModelStoreError as exc:
        raise spec_error(exc) from None


# --------------------------------------------------------------------------- sources


class Source:
    """Where the files come from. ``open(rel)`` -> a binary stream of the file (``read(n)``)."""

    kind = "?"
    shown = "?"

    def open(self, rel: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError

    def where(self, rel: str) -> str:
        return f"{self.shown}/{rel}"


class DirSource(Source):
    kind = "dir"

    def __init__(self, root: Path, shown: str):
        self.root, self.shown = root, shown

    def open(self, rel: str) -> BinaryIO:
        try:
            return open(self.root / rel, "rb", buffering=0)  # the caller closes it
        except FileNotFoundError:
            raise StageError([(rel, f"not in the source folder {self.shown}")]) from None
        except OSError as exc:
            raise StageError([(rel, f"cannot read {self.where(rel)}: {exc.strerror}")]) from None


class HttpSource(Source):
    kind = "http"

    def __init__(self, base: str, timeout: float):
        parts = urllib.parse.urlsplit(base)
        self.base = base.rstrip("/")
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        self.shown = f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"  # never the credentials
        self.timeout = timeout

    def open(self, rel: str) -> BinaryIO:
        url = f"{self.base}/{urllib.parse.quote(rel, safe='/')}"
        req = urllib.request.Request(url, headers={"User-Agent": "llmcluster-model-stage"})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)  # http(s) only (open_source)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise StageError([(rel, f"HTTP {exc.code} {exc.reason} from {self.where(rel)}")]) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StageError([(rel, f"cannot fetch {self.where(rel)}: {reason}")]) from None


class S3Source(Source):
    kind = "s3"

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, timeout: float, workers: int):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.shown = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        config = Config(max_pool_connections=max(10, workers), read_timeout=timeout, connect_timeout=timeout,
                        retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def open(self, rel: str) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"]
        except NoCredentialsError:
            raise StageError([("--from", f"{self.shown}: no AWS credentials (environment, ~/.aws, instance "
                                         "profile)")]) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            what = {"NoSuchKey": "not found", "404": "not found", "NoSuchBucket": "no such bucket",
                    "AccessDenied": "access denied", "403": "access denied"}.get(code, code)
            raise StageError([(rel, f"{what} at {self.where(rel)}")]) from None
        except BotoCoreError as exc:
            raise StageError([(rel, f"cannot fetch {self.where(rel)}: {exc}")]) from None


def open_source(text: str, *, s3_endpoint_url: str | None = None, timeout: float = 60.0,
                workers: int = 4) -> Source:
    """``--from``: a local folder, an ``http(s)://`` base URL, or ``s3://bucket/prefix``."""
    if "\0" in text or not text:
        raise SpecError(Problem("--from", "an empty path or one with a NUL character"))
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        parts = urllib.parse.urlsplit(text)
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise SpecError(Problem("--from", f"{text[:100]}: not a valid URL (port)")) from None
        if not parts.hostname or parts.query or parts.fragment:
            raise SpecError(Problem("--from", f"{text[:100]}: not a mirror base URL (http(s)://host[:port]/path, "
                                              "no query or fragment)"))
        return HttpSource(text, timeout)
    if scheme == "s3":
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise SpecError(Problem("--from", f"{text[:100]}: no bucket (s3://bucket/prefix)"))
        endpoint = s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint and not urllib.parse.urlsplit(endpoint).hostname:
            raise SpecError(Problem("--s3-endpoint-url", f"{endpoint[:100]}: not a URL (http(s)://host:port)"))
        return S3Source(bucket, prefix, endpoint, timeout, workers)
    if scheme:
        raise SpecError(Problem("--from", f"{scheme}://: not a source llmcluster reads (a folder, http(s)://, s3://)"))
    from llmcluster.outdir import check_path_text

    check_path_text(text, where="--from")
    try:
        MM.check_root(text, "--from")
    except MM.ModelStoreError as exc:
        raise spec_error(exc) from None
    return DirSource(Path(text), text)


# --------------------------------------------------------------------------- stage


@dataclass
class StageReport:
    source: str
    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    fetch_seconds: float = 0.0
    seconds: float = 0.0
    verify: MM.Report | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fetched": len(self.fetched), "present": len(self.present),
                "replaced": sorted(self.replaced), "bytes_fetched": self.bytes_fetched,
                "fetch_seconds": round(self.fetch_seconds, 4), "seconds": round(self.seconds, 4),
                "fetch_mbps": round(self.bytes_fetched / 1e6 / self.fetch_seconds, 2) if self.fetch_seconds else 0.0,
                "verify": self.verify.to_dict() if self.verify else None}


class _Cancelled(Exception):
    pass


def _copy(stream: BinaryIO, fd: int, entry: MM.Entry, source: Source, stop: threading.Event) -> None:
    h = hashlib.sha256()
    n = 0
    while True:
        if stop.is_set():
            raise _Cancelled
        try:
            chunk = stream.read(BUFFER_BYTES)
        except Exception as exc:  # any failure of a source's stream (socket, HTTP, botocore)
            raise StageError([(entry.path, f"reading {source.where(entry.path)} failed: "
                                           f"{type(exc).__name__}: {exc}")]) from None
        if not chunk:
            break
        n += len(chunk)
        if n > entry.size:
            raise StageError([(entry.path, f"{source.where(entry.path)} holds more than the manifest's "
                                           f"{entry.size} bytes: the source is not this model")])
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
    if n != entry.size:
        raise StageError([(entry.path, f"{source.where(entry.path)} delivered {n} of the manifest's {entry.size} "
                                       f"bytes (truncated)")])
    digest = h.hexdigest()
    if digest != entry.sha256:
        raise StageError([(entry.path, f"sha256 mismatch from {source.where(entry.path)} (expected "
                                       f"{entry.sha256[:12]}.., got {digest[:12]}..): the source is corrupt")])


def _fetch(source: Source, entry: MM.Entry, dest: Path, replace: bool, stop: threading.Event) -> int:
    final = dest / entry.path
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name[:200]}.", suffix=STAGE_SUFFIX, dir=final.parent)

    def write(fd: int) -> None:
        stream = source.open(entry.path)
        try:
            _copy(stream, fd, entry, source, stop)
        finally:
            stream.close()

    try:
        MM.publish(fd, tmp, str(final), replace, write)
    except FileExistsError:
        raise StageError([(entry.path, "appeared in the destination while staging: not overwritten")]) from None
    except OSError as exc:
        raise StageError([(entry.path, f"cannot write {final}: {exc.strerror}")]) from None
    return entry.size


def _hash_existing(dest: Path, entry: MM.Entry) -> bool:
    try:
        fd = os.open(dest / entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        digest, n = MM.hash_fd(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return n == entry.size and digest == entry.sha256


def _preflight(manifest: MM.Manifest, dest: Path, exclude: set[str], replace: bool, workers: int
               ) -> tuple[list[MM.Entry], list[str], list[str]]:
    """(entries to fetch, relative paths already present, paths to be replaced); refuses (nothing written)
    what stage must not touch."""
    wanted = {e.path: e for e in manifest.files}
    if not dest.exists():
        return list(manifest.files), [], []
    tree = MM.walk_tree(os.fspath(dest))
    problems = [Problem("--to", f"{rel}: {why}") for rel, why in tree.errors]
    problems += [Problem("--to", f"{rel}: {why.split(':')[0]}: stage writes regular files only and never removes "
                                 f"what it did not write: move it away") for rel, why in tree.others.items()]
    problems += [Problem("--to", f"{rel}: not in the manifest: the staged tree would fail verification, and stage "
                                 f"never removes what it did not write: move it away")
                 for rel in tree.files if rel not in wanted and rel not in exclude]
    for rel in wanted:
        if rel not in tree.files and os.path.isdir(dest / rel) and not os.path.islink(dest / rel):
            problems.append(Problem("--to", f"{rel}: a folder is in the way: move it away"))
    if problems:
        raise SpecError(problems)
    same_size = [wanted[rel] for rel, st in tree.files.items() if rel in wanted and st.st_size == wanted[rel].size]
    good: set[str] = set()
    if same_size:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(same_size)))) as pool:
            good = {e.path for e, ok in zip(same_size, pool.map(lambda e: _hash_existing(dest, e), same_size),
                                            strict=True) if ok}
    wrong = sorted(rel for rel in tree.files if rel in wanted and rel not in good)
    if wrong and not replace:
        raise SpecError([Problem("--to", f"{rel}: exists and is not the manifest's file (size {tree.files[rel].st_size}"
                                         f", expected {wanted[rel].size}; or another sha256): pass --replace to "
                                         f"replace it") for rel in wrong])
    todo = [e for e in manifest.files if e.path not in good]
    return todo, sorted(good), wrong


def _make_dirs(dest: Path, entries: list[MM.Entry], created: list[Path]) -> None:
    """Create ``dest`` and the folders of ``entries`` (recording those created); never through a symlink."""
    missing = []
    anc = dest
    while not os.path.lexists(anc):
        missing.append(anc)
        anc = anc.parent
    for d in reversed(missing):
        os.mkdir(d)
        created.append(d)
    for rel in sorted({str(Path(e.path).parent) for e in entries} - {"."}):
        p = dest
        for part in Path(rel).parts:
            p = p / part
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                os.mkdir(p)
                created.append(p)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise SpecError(Problem("--to", f"{p.relative_to(dest)}: in the way (not a folder): move it away"))


def _rollback(files: list[Path], dirs: list[Path]) -> None:
    for f in files:
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    for d in reversed(dirs):
        try:
            os.rmdir(d)
        except OSError:
            pass  # something else appeared there: never removed


def stage(manifest: MM.Manifest, source: Source, dest: Path, *, workers: int | None = None, replace: bool = False,
          keep_partial: bool = False, manifest_path: Path | None = None,
          on_file: Callable[[str, int, float], None] | None = None) -> StageReport:
    """Stage ``manifest``'s files from ``source`` into ``dest`` (see the module docstring); raises
    :class:`SpecError` (refused, nothing written), :class:`StageError` (a fetch failed; what this run
    wrote removed) or :class:`Mismatch` (the final verification failed)."""
    n = workers or MM.default_workers()
    t0 = time.monotonic()
    from llmcluster.outdir import check_path_text

    check_path_text(dest, where="--to")
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise SpecError(Problem("--to", f"{dest}: {exc.strerror}")) from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise SpecError(Problem("--to", f"{dest}: not a folder"))
    if isinstance(source, DirSource) and st is not None and os.path.samefile(source.root, dest):
        raise SpecError(Problem("--to", f"{dest}: is the --from folder"))
    exclude = MM.path_within(os.fspath(dest), os.fspath(manifest_path)) if manifest_path else set()
    todo, present, wrong = _preflight(manifest, dest, exclude, replace, n)
    report = StageReport(source=source.shown, present=present, replaced=list(wrong))
    created_dirs: list[Path] = []
    created_files: list[Path] = []
    lock = threading.Lock()
    try:
        _make_dirs(dest, todo, created_dirs)
    except OSError as exc:
        _rollback([], created_dirs)
        raise SpecError(Problem("--to", f"{dest}: cannot create folders: {exc.strerror}")) from None
    stop = threading.Event()
    t1 = time.monotonic()

    def one(entry: MM.Entry) -> None:
        t = time.monotonic()
        new = not os.path.lexists(dest / entry.path)
        _fetch(source, entry, dest, replace and entry.path in wrong, stop)
        with lock:
            if new:
                created_files.append(dest / entry.path)
            report.fetched.append(entry.path)
            report.bytes_fetched += entry.size
        if on_file is not None:
            on_file(entry.path, entry.size, time.monotonic() - t)

    errors: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(n, len(todo) or 1)), thread_name_prefix="model-stage")
    try:
        futures = [pool.submit(one, e) for e in sorted(todo, key=lambda e: -e.size)]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            stop.set()
            for f in pending:
                f.cancel()
        wait(futures)
        for f in futures:
            if f.cancelled():
                continue
            exc = f.exception()
            if isinstance(exc, StageError):
                errors.extend(exc.problems)
            elif isinstance(exc, _Cancelled):
                continue
            elif exc is not None:
                raise exc
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        if not keep_partial:
            _rollback(created_files, created_dirs)
        raise
    pool.shutdown(wait=True)
    if errors:
        if not keep_partial:
            _rollback(created_files, created_dirs)
        raise StageError(sorted(set(errors)))
    report.fetch_seconds = time.monotonic() - t1
    report.verify = MM.verify(os.fspath(dest), manifest, n, exclude=exclude)
    report.seconds = time.monotonic() - t0
    if not report.verify.ok:
        raise Mismatch(report.verify)
    return report
