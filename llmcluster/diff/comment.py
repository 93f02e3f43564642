"""The sticky pull-request comment: one per (stack, layer), found again by a hidden marker.

* :func:`marker` is an HTML comment no one types by hand (``<!-- llmcluster-diff stack=S layer=L -->``);
  :func:`upsert` lists the pull request's comments (every page), edits the one carrying the
  marker in place, or creates it. Two stacks (or two layers) carry two markers: two comments,
  never overwriting each other; matrix jobs of one workflow run touch only their own.
* :func:`fit` keeps the comment below :data:`LIMIT` (GitHub refuses a body over 65,536
  characters): the header and the count summary always, then the report's blocks in their
  fixed order while they fit, then a note of what was cut and where the full report is (the
  workflow artifact). The same report always gives the same comment.
* A report without changes creates no comment; an existing comment is edited to say so.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

from llmcluster.diff.render import markdown_blocks
from llmcluster.errors import LLMClusterError

LIMIT = 60_000
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def marker(stack: str, layer: str) -> str:
    return f"<!-- llmcluster-diff stack={_NAME.sub('_', stack)} layer={_NAME.sub('_', layer)} -->"


def fit(report: dict[str, Any], *, limit: int = LIMIT, artifact: str | None = None, run_url: str | None = None) -> str:
    """The comment body for ``report``: below ``limit`` characters, its summary always kept."""
    head = marker(str(report.get("stack")), str(report.get("layer", "infra")))
    blocks = markdown_blocks(report)
    where = f"the workflow artifact `{artifact}`" if artifact else "the workflow artifact"
    if run_url:
        where += f" of [this run]({run_url})"
    body = [head, blocks[0]]
    used = sum(len(b) + 1 for b in body)
    rest = blocks[1:]
    kept = 0
    # room for the note, whatever numbers it carries
    reserve = 400 + len(where)
    for b in rest:
        if used + len(b) + 1 + reserve > limit:
            break
        body.append(b)
        used += len(b) + 1
        kept += 1
    if kept < len(rest):
        cut = sum(len(b) + 1 for b in rest[kept:])
        body.append(f"\n> **Truncated**: {len(rest) - kept} of {len(rest)} sections ({cut:,} characters) are not "
                    f"shown (a comment holds at most {limit:,}); the full report is in {where}.")
    elif artifact:
        body.append(f"\n<sub>Full report (markdown and JSON): {where}.</sub>")
    text = "\n".join(body)
    return text if len(text) <= limit else text[:limit]  # only for a limit below the summary's own size


class GitHub:
    """The few calls of GitHub's REST API the comment needs (issue comments of a pull request)."""

    def __init__(self, api_url: str, token: str, repo: str, timeout: float = 30.0):
        self.api = api_url.rstrip("/")
        self.token = token
        self.repo = repo
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(f"{self.api}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            raise LLMClusterError(f"GitHub API {method} {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise LLMClusterError(f"GitHub API {method} {path}: {getattr(exc, 'reason', exc)}") from None
        return json.loads(raw) if raw else None

    def comments(self, number: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self._call("GET", f"/repos/{self.repo}/issues/{number}/comments?per_page=100&page={page}")
            out += batch or []
            if not batch or len(batch) < 100:
                return out
            page += 1

    def create(self, number: int, body: str) -> dict[str, Any]:
        return self._call("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})

    def update(self, comment_id: int, body: str) -> dict[str, Any]:
        return self._call("PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", {"body": body})


def upsert(gh: GitHub, number: int, report: dict[str, Any], *, artifact: str | None = None,
           run_url: str | None = None) -> tuple[str, int | None]:
    """Create or edit the report's sticky comment: ("created" | "updated" | "skipped", comment id)."""
    mark = marker(str(report.get("stack")), str(report.get("layer", "infra")))
    mine = [c for c in gh.comments(number) if mark in (c.get("body") or "")]
    changed = bool((report.get("summary") or {}).get("changed"))
    if not mine and not changed:
        return "skipped", None
    body = fit(report, artifact=artifact, run_url=run_url)
    if mine:
        first = min(mine, key=lambda c: c["id"])
        gh.update(first["id"], body)
        return "updated", first["id"]
    made = gh.create(number, body)
    return "created", made.get("id")
