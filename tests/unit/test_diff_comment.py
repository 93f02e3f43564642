"""The sticky pull-request comment against a fake GitHub API (a real HTTP server on 127.0.0.1 that keeps
comments as GitHub's issue-comment endpoints do): create, a rerun edits the same comment, two stacks get
two comments, no comment for a report without changes, a 300,000-character report stays below the limit
with its summary intact, and ``llmcluster pr-comment`` end to end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from llmcluster.diff.comment import LIMIT, GitHub, fit, marker, upsert
from llmcluster.diff.render import summary_block

TOKEN = "test-token-not-a-secret"
REPO = "org/llmcluster"
PR = 7


class FakeGitHub:
    def __init__(self):
        self.comments: dict[int, dict] = {}
        self.next_id = 1000
        self.calls: list[tuple[str, str]] = []
        # someone else's comments first: more than a page of them
        for i in range(120):
            self._add(f"looks good {i}")

    def _add(self, body: str) -> dict:
        self.next_id += 1
        c = {"id": self.next_id, "body": body}
        self.comments[c["id"]] = c
        return c


@pytest.fixture
def api():
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _reply(self, code, doc):
            raw = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _auth(self):
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"message": "Bad credentials"})
                return False
            return True

        def do_GET(self):
            u = urlparse(self.path)
            fake.calls.append(("GET", u.path))
            if not self._auth():
                return
            if u.path != f"/repos/{REPO}/issues/{PR}/comments":
                return self._reply(404, {"message": "Not Found"})
            q = parse_qs(u.query)
            per, page = int(q.get("per_page", ["30"])[0]), int(q.get("page", ["1"])[0])
            items = sorted(fake.comments.values(), key=lambda c: c["id"])
            self._reply(200, items[(page - 1) * per: page * per])

        def _body(self):
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def do_POST(self):
            fake.calls.append(("POST", self.path))
            if not self._auth():
                return
            if self.path != f"/repos/{REPO}/issues/{PR}/comments":
                return self._reply(404, {"message": "Not Found"})
            body = self._body()["body"]
            if len(body) > 65536:
                return self._reply(422, {"message": "Body is too long (maximum is 65536 characters)"})
            self._reply(201, fake._add(body))

        def do_PATCH(self):
            fake.calls.append(("PATCH", self.path))
            if not self._auth():
                return
            cid = int(self.path.rsplit("/", 1)[-1])
            if not self.path.startswith(f"/repos/{REPO}/issues/comments/") or cid not in fake.comments:
                return self._reply(404, {"message": "Not Found"})
            body = self._body()["body"]
            if len(body) > 65536:
                return self._reply(422, {"message": "Body is too long (maximum is 65536 characters)"})
            fake.comments[cid]["body"] = body
            self._reply(200, fake.comments[cid])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def report(stack: str, *, changed: bool = True, artifact_chars: int = 0, tag: str = "") -> dict:
    arts = []
    if artifact_chars:
        # many artifacts of ~3,000 characters each, as a big fabric change gives
        n = artifact_chars // 3000
        arts = [{"path": f"switches/leaf-{i:03d}.nvue.yaml", "status": "changed", "added_lines": 50,
                 "removed_lines": 50, "diff": "\n".join(f"+  line {i} {j} {tag}".ljust(58, "x") for j in range(50))}
                for i in range(n)]
    r = {"version": 1, "stack": stack, "layer": "infra", "base": {"label": "main", "exists": True},
         "head": {"label": "pr", "exists": True},
         "resources": [{"urn": f"urn:pulumi:{stack}::llmcluster::x$t::r", "type": "t", "op": "update",
                        "changes": [{"path": "a", "before": 1, "after": 2 if not tag else tag}]}] if changed else [],
         "addresses": [], "firewall": {"opened": [], "closed": [], "matrix": {}}, "capacity": [], "plan": [],
         "artifacts": arts, "hostvars": [], "config": []}
    from llmcluster.diff.core import summarise

    r["summary"] = summarise(r)
    return r


def gh(api) -> GitHub:
    return GitHub(api.url, TOKEN, REPO)


def mine(api, stack, layer="infra"):
    return [c for c in api.comments.values() if marker(stack, layer) in c["body"]]


def test_create_then_rerun_edits_the_same_comment(api):
    action, cid = upsert(gh(api), PR, report("lab", tag="first"))
    assert action == "created" and len(mine(api, "lab")) == 1
    action2, cid2 = upsert(gh(api), PR, report("lab", tag="second"))
    assert (action2, cid2) == ("updated", cid)
    assert len(mine(api, "lab")) == 1
    assert "second" in api.comments[cid]["body"] and "first" not in api.comments[cid]["body"]
    # the other comments (beyond the first page) are untouched, and the listing read every page
    assert sum(1 for c in api.comments.values() if c["body"].startswith("looks good")) == 120
    assert ("GET", f"/repos/{REPO}/issues/{PR}/comments") in api.calls
    assert [m for m, _ in api.calls].count("GET") >= 4  # 2 pages (121 comments) x 2 runs


def test_two_stacks_two_comments_and_layers_apart(api):
    upsert(gh(api), PR, report("lab"))
    upsert(gh(api), PR, report("prod-aws"))
    hosts = report("lab")
    hosts["layer"] = "hosts"
    hosts["hosts"] = {"summary": {"hosts_total": 1, "hosts_changed": 1, "tasks_changed": 1, "failed": 0,
                                  "unreachable": 0}, "hosts": []}
    upsert(gh(api), PR, hosts)
    upsert(gh(api), PR, report("prod-aws", tag="again"))
    assert len(mine(api, "lab")) == 1 and len(mine(api, "prod-aws")) == 1 and len(mine(api, "lab", "hosts")) == 1
    assert "again" in mine(api, "prod-aws")[0]["body"]
    assert "again" not in mine(api, "lab")[0]["body"]


def test_no_changes_no_new_comment_but_an_existing_one_is_updated(api):
    assert upsert(gh(api), PR, report("lab", changed=False)) == ("skipped", None)
    assert mine(api, "lab") == []
    _, cid = upsert(gh(api), PR, report("lab"))
    assert upsert(gh(api), PR, report("lab", changed=False)) == ("updated", cid)
    assert "**No changes.**" in api.comments[cid]["body"]


def test_oversize_report_fits_with_its_summary(api):
    big = report("prod-baremetal", artifact_chars=300_000)
    from llmcluster.diff.render import markdown

    full = markdown(big)
    assert len(full) >= 300_000
    body = fit(big, artifact="llmcluster-diff-prod-baremetal")
    assert len(body) < LIMIT
    assert summary_block(big) in body
    assert "**Truncated**" in body and "llmcluster-diff-prod-baremetal" in body
    assert fit(big, artifact="llmcluster-diff-prod-baremetal") == body  # deterministic
    # every block kept is whole: the <details> tags balance, code fences close
    assert body.count("<details>") == body.count("</details>")
    assert body.count("```") % 2 == 0
    action, cid = upsert(gh(api), PR, big, artifact="llmcluster-diff-prod-baremetal")
    assert action == "created" and api.comments[cid]["body"] == body
    # a real GitHub would refuse the untruncated report
    with pytest.raises(Exception, match="HTTP 422"):
        gh(api).create(PR, full)


def test_small_report_is_whole(api):
    r = report("lab")
    body = fit(r)
    assert "Truncated" not in body and body.startswith(marker("lab", "infra"))


def test_pr_comment_cli(api, tmp_path, monkeypatch, capsys):
    from llmcluster.cli import main

    p = tmp_path / "lab.json"
    p.write_text(json.dumps(report("lab")))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    args = ["pr-comment", "--report", str(p), "--pr", str(PR), "--repo", REPO, "--api-url", api.url]
    assert main(args) == 0
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lab (infra): created comment ") and out[1].startswith("lab (infra): updated comment ")
    assert len(mine(api, "lab")) == 1


@pytest.mark.parametrize("case,expected", [
    ("no-token", "GITHUB_TOKEN: not set"),
    ("bad-report", "--report: "),
    ("missing-report", "--report: "),
    ("bad-repo", "--repo: give owner/name"),
    ("bad-token", "error: GitHub API GET"),
])
def test_pr_comment_cli_errors(api, tmp_path, monkeypatch, capsys, case, expected):
    from llmcluster.cli import main

    p = tmp_path / "r.json"
    p.write_text("{not json" if case == "bad-report" else json.dumps(report("lab")))
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    if case != "no-token":
        monkeypatch.setenv("GITHUB_TOKEN", "wrong" if case == "bad-token" else TOKEN)
    else:
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    args = ["pr-comment", "--report", str(tmp_path / "nope.json") if case == "missing-report" else str(p),
            "--pr", str(PR), "--api-url", api.url, *([] if case == "bad-repo" else ["--repo", REPO])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(marker("lab", "infra") not in c["body"] for c in api.comments.values())
