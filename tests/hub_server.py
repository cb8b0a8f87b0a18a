"""A small Hub-compatible HTTP server for offline tests, driven by the real `huggingface_hub` client.

Implements what uploads and downloads use: repo create, repo info, branch create, preupload, LFS batch and PUT,
NDJSON commits, resolve (HEAD/GET), tree (one level, or recursive, with folder entries) and paths-info, for model
repos (`/api/models/...`, `/<id>/resolve/...`) and dataset repos (`/api/datasets/...`, `/datasets/<id>/resolve/...`,
what `datasets.push_to_hub` and `load_dataset("owner/name")` use). Repos keep every commit, so old revisions stay
downloadable by their commit sha; private repos answer 404 `RepoNotFound` without the right token. Model repos are
keyed by their id in `HubState.repos`, dataset repos by `"datasets/<id>"`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

TOKEN = "hf_test_token"
LFS_SUFFIXES = (".safetensors", ".png", ".bin", ".parquet", ".arrow")


def repo_key(kind: str, repo_id: str) -> str:
    """The key of a repo in `HubState.repos`: `kind` is the URL's `models` or `datasets`."""
    return repo_id if kind == "models" else f"{kind}/{repo_id}"


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.commit_count = 0

    def new_commit(self, repo: dict, files: dict[str, bytes], parent: str | None, message: str) -> str:
        self.commit_count += 1
        sha = hashlib.sha1(f"{self.commit_count}:{message}:{parent}".encode()).hexdigest()
        repo["commits"][sha] = {"files": files, "parent": parent, "message": message}
        return sha


def _etag(content: bytes, lfs: bool) -> str:
    if lfs:
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def make_handler(state: HubState, base_url: list[str]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # -- helpers ---------------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict | None = None):
            self._send(status, json.dumps(payload).encode(), headers)

        def _error(self, status: int, code: str, message: str):
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorized(self) -> bool:
            return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

        def _repo(self, repo_id: str, write: bool = False):
            repo = state.repos.get(repo_id)  # a key of `state.repos` (see `repo_key`)
            if repo is None or ((repo["private"] or write) and not self._authorized()):
                self._error(404 if repo is None or not write else 401, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            return repo

        def _commit_for(self, repo: dict, revision: str):
            revision = unquote(revision)
            if revision in repo["branches"]:
                return repo["branches"][revision]
            if revision in repo["commits"]:
                return revision
            self._error(404, "RevisionNotFound", f"Revision {revision} not found")
            return None

        def _repo_at(self, repo_id: str, revision: str):
            """`(repo, commit sha)` for a readable repo and revision, or `None` after answering with the error."""
            repo = self._repo(repo_id)
            if repo is None:
                return None
            sha = self._commit_for(repo, revision)
            return None if sha is None else (repo, sha)

        def _entries(self, repo: dict, sha: str, paths: list[str] | None = None, prefix: str = "",
                     recursive: bool = True):
            """paths-info entries of `paths` (a folder among them gets a folder entry), or the tree under `prefix`:
            its direct files and folders, or (`recursive`) every file and folder below it, as the Hub answers."""
            files = repo["commits"][sha]["files"]
            prefix = prefix.strip("/")
            folders = sorted({"/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)})
            def selected(path: str) -> bool:
                if paths is not None:
                    return path in paths
                if prefix and not path.startswith(prefix + "/"):
                    return False
                return recursive or path.count("/") == (prefix.count("/") + 1 if prefix else 0)

            out = []
            for path in filter(selected, folders):
                out.append({"type": "directory", "path": path,
                            "oid": hashlib.sha1(f"{sha}:{path}".encode()).hexdigest()})
            for path, content in sorted(files.items()):
                if not selected(path):
                    continue
                lfs = path.endswith(LFS_SUFFIXES)
                entry = {"type": "file", "path": path, "size": len(content), "oid": _etag(content, False)}
                if lfs:
                    entry["lfs"] = {"oid": _etag(content, True), "size": len(content), "pointerSize": 130}
                out.append(entry)
            return out

        # -- routes ----------------------------------------------------------------------------
        def do_POST(self):  # noqa: N802
            path = urlparse(self.path).path
            body = self._body()
            with state.lock:
                if path == "/api/validate-yaml":
                    import yaml

                    content = json.loads(body).get("content", "")
                    match = re.match(r"^---\n(.*?)\n---", content, re.S)
                    try:
                        meta = yaml.safe_load(match.group(1)) if match else {}
                        assert meta is None or isinstance(meta, dict)
                    except Exception as err:  # noqa: BLE001
                        return self._json(400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []})
                    return self._json(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    payload = json.loads(body or b"{}")
                    repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
                    kind = {"dataset": "datasets", "model": "models", None: "models"}.get(payload.get("type"))
                    if kind is None:
                        return self._error(400, "BadRequest", f"repo type {payload.get('type')!r} is not served here")
                    if not self._authorized():
                        return self._error(401, "Unauthorized", "Invalid credentials")
                    key = repo_key(kind, repo_id)
                    if key in state.repos:
                        message = f"You already created this {payload.get('type') or 'model'} repo"
                        return self._json(409, {"error": message, "url": f"{base_url[0]}/{key}"},
                                          {"X-Error-Code": "RepoExists", "X-Error-Message": message})
                    private = payload.get("visibility") == "private" or bool(payload.get("private"))
                    repo = {"private": private, "branches": {}, "commits": {}}
                    repo["branches"]["main"] = state.new_commit(repo, {}, None, "initial commit")
                    state.repos[key] = repo
                    return self._json(200, {"url": f"{base_url[0]}/{key}"})
                m = re.match(r"^/api/(models|datasets)/(.+)/branch/([^/]+)$", path)
                if m:
                    m = _Shifted(m)
                    repo = self._repo(m.group(1), write=True)
                    if repo is None:
                        return None
                    branch = unquote(m.group(2))
                    if branch in repo["branches"]:
                        return self._error(409, "BranchExists", "Branch already exists")
                    payload = json.loads(body or b"{}")
                    repo["branches"][branch] = payload.get("startingPoint") or repo["branches"]["main"]
                    return self._json(200, {})
                m = re.match(r"^/api/(models|datasets)/(.+)/preupload/([^/]+)$", path)
                if m:
                    m = _Shifted(m)
                    if self._repo(m.group(1), write=True) is None:
                        return None
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [
                        {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                         "shouldIgnore": False} for f in files]})
                m = re.match(r"^/(.+)\.git/info/lfs/objects/batch$", path)
                if m:
                    payload = json.loads(body)
                    objects = []
                    for obj in payload["objects"]:
                        entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                        if obj["oid"] not in state.lfs:
                            entry["actions"] = {"upload": {"href": f"{base_url[0]}/lfs-upload/{obj['oid']}"}}
                        objects.append(entry)
                    return self._json(200, {"transfer": "basic", "objects": objects})
                m = re.match(r"^/api/(models|datasets)/(.+)/commit/([^/]+)$", path)
                if m:
                    m = _Shifted(m)
                    repo = self._repo(m.group(1), write=True)
                    if repo is None:
                        return None
                    branch = unquote(m.group(2))
                    parent = repo["branches"].get(branch)
                    if parent is None:
                        return self._error(404, "RevisionNotFound", f"Branch {branch} not found")
                    files = dict(repo["commits"][parent]["files"])
                    message = "commit"
                    for line in body.splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        value = item["value"]
                        if item["key"] == "header":
                            message = value.get("summary", message)
                        elif item["key"] == "file":
                            files[value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "lfsFile":
                            if value["oid"] not in state.lfs:
                                return self._error(400, "BadRequest", f"LFS object {value['oid']} was not uploaded")
                            files[value["path"]] = state.lfs[value["oid"]]
                        elif item["key"] in ("deletedFile", "deletedFolder"):
                            for key in [k for k in files if k == value["path"] or k.startswith(value["path"].rstrip("/") + "/")]:
                                del files[key]
                    sha = state.new_commit(repo, files, parent, message)
                    repo["branches"][branch] = sha
                    return self._json(200, {"commitUrl": f"{base_url[0]}/{m.key}/commit/{sha}", "commitOid": sha,
                                            "pullRequestUrl": None})
                m = re.match(r"^/api/(models|datasets)/(.+)/paths-info/([^/]+)$", path)
                if m:
                    m = _Shifted(m)
                    found = self._repo_at(m.group(1), m.group(2))
                    if found is None:
                        return None
                    repo, sha = found
                    try:
                        paths = json.loads(body).get("paths", [])
                    except json.JSONDecodeError:
                        paths = parse_qs(body.decode()).get("paths", [])
                    return self._json(200, self._entries(repo, sha, paths=list(paths)))
            return self._error(404, "NotFound", f"No route for POST {path}")

        def do_PUT(self):  # noqa: N802
            path = urlparse(self.path).path
            body = self._body()
            m = re.match(r"^/lfs-upload/([0-9a-f]{64})$", path)
            if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                return self._error(400, "BadRequest", "LFS upload does not match its oid")
            with state.lock:
                state.lfs[m.group(1)] = body
            return self._send(200)

        def do_GET(self):  # noqa: N802
            self._get_or_head()

        def do_HEAD(self):  # noqa: N802
            self._get_or_head()

        def _get_or_head(self):
            url = urlparse(self.path)
            path, query = url.path, parse_qs(url.query)
            with state.lock:
                m = re.match(r"^/api/(models|datasets)/(.+?)(?:/revision/([^/]+))?$", path)
                if m and "/tree/" not in path:
                    m = _Shifted(m)
                    found = self._repo_at(m.group(1), m.group(2) or "main")
                    if found is None:
                        return None
                    repo, sha = found
                    info = {"id": m.id, "sha": sha, "private": repo["private"],
                            "siblings": [{"rfilename": p} for p in sorted(repo["commits"][sha]["files"])]}
                    if m.kind == "models":
                        info["modelId"] = m.id
                    return self._json(200, info)
                m = re.match(r"^/api/(models|datasets)/(.+)/tree/([^/]+)(?:/(.*))?$", path)
                if m:
                    m = _Shifted(m)
                    found = self._repo_at(m.group(1), m.group(2))
                    if found is None:
                        return None
                    repo, sha = found
                    recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                    prefix = unquote(m.group(3) or "").strip("/")
                    if prefix and not any(p.startswith(prefix + "/") for p in repo["commits"][sha]["files"]):
                        return self._error(404, "EntryNotFound", f"{prefix} is not a folder at {sha}")
                    return self._json(200, self._entries(repo, sha, prefix=prefix, recursive=recursive))
                m = re.match(r"^/((?:datasets/)?.+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    found = self._repo_at(m.group(1), m.group(2))
                    if found is None:
                        return None
                    repo, sha = found
                    filename = unquote(m.group(3))
                    files = repo["commits"][sha]["files"]
                    if filename not in files:
                        return self._error(404, "EntryNotFound", f"{filename} does not exist at {sha}")
                    content = files[filename]
                    lfs = filename.endswith(LFS_SUFFIXES)
                    headers = {"X-Repo-Commit": sha, "ETag": f'"{_etag(content, lfs)}"'}
                    if lfs:
                        headers.update({"X-Linked-Etag": f'"{_etag(content, True)}"', "X-Linked-Size": str(len(content))})
                    return self._send(200, content, headers, content_type="application/octet-stream")
            return self._error(404, "NotFound", f"No route for {self.command} {path}")

    return Handler


class _Shifted:
    """A route match of `/api/(models|datasets)/<id>/...`: `group(1)` is the repo's key in `HubState.repos`
    (see `repo_key`), `group(k)` the route's k-th group after the id; `kind` and `id` as in the URL."""

    def __init__(self, match: re.Match) -> None:
        self.kind, self.id, self._match = match.group(1), match.group(2), match
        self.key = repo_key(self.kind, self.id)

    def group(self, index: int):
        return self.key if index == 1 else self._match.group(index + 1)


class HubServer:
    """Start with `HubServer().start()`; `url` is the endpoint; `stop()` shuts it down."""

    def __init__(self) -> None:
        self.state = HubState()
        self._base = [""]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state, self._base))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._base[0] = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
