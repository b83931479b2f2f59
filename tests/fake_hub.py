"""A small stand-in for the Hugging Face Hub on 127.0.0.1, enough for huggingface_hub
2.4.0 (and diffusers' DiffusionPipeline.download) to download from it.

What huggingface_hub asks of it (read from its source):
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: `sha` and `siblings`
  (HfApi.model_info / repo_info / resolve_revision);
- `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=...`: files with size, oid and
  `lfs` (HfApi.list_repo_tree, used by snapshot_download), one page, no Link header;
- `HEAD /{repo}/resolve/{rev}/{path}`: ETag, X-Repo-Commit, Content-Length, and for LFS
  files X-Linked-Etag / X-Linked-Size (get_hf_file_metadata); no X-Xet-* headers and no
  `xetHash` in listings, so hf_xet (installed) is never used and plain HTTP is;
- `GET` of the same address, with `Range: bytes=N-` answered by 206;
- errors as `X-Error-Code` headers (hf_raise_for_status): GatedRepo (401) for a gated
  repo's files, RepoNotFound (404) for an unknown repo, RevisionNotFound (404).

Switches for the tests: `throttle` (slow a file down: so many bytes, then a pause),
`cut_after` (close the connection after so many bytes of a file, once) and `requests`
(every request seen, with its Range header).
"""
from __future__ import annotations

from contextlib import contextmanager
import hashlib
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5")


@dataclass
class RepoFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {len(self.data)}\n").encode()

    @property
    def git_oid(self) -> str:
        """The git blob id: of the content, or of the LFS pointer for LFS files."""
        body = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.git_oid, "size": len(self.data), "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


@dataclass
class Repo:
    repo_id: str
    files: dict[str, RepoFile]
    gated: bool = False
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:
            h = hashlib.sha1(self.repo_id.encode())
            for name in sorted(self.files):
                h.update(name.encode() + self.files[name].git_oid.encode())
            self.sha = h.hexdigest()

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, gated: bool = False, extra: dict[str, bytes] | None = None) -> "Repo":
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        files.update(extra or {})
        return cls(repo_id, {k: RepoFile(k, v) for k, v in files.items()}, gated)

    def total_bytes(self, paths=None) -> int:
        return sum(len(f.data) for p, f in self.files.items() if paths is None or p in paths)


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # file path (in the repo) -> (bytes per burst, seconds between bursts)
    throttle: dict[str, tuple[int, float]] = field(default_factory=dict)
    # file path -> bytes after which the next GET of it is cut (once)
    cut_after: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _server: "_Server | None" = None
    _serving: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.repo_id] = repo
        return repo

    def gets(self, path_suffix: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path and r.path.endswith(path_suffix)]

    # ------------------------------------------------------------ server

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = _Server(("127.0.0.1", 0), Handler)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._serving = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._serving.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every connection still open and join every thread: nothing of
        this hub outlives the test that started it."""
        if self._server is not None:
            self._server.shutdown()
            self._serving.join()
            self._server.close_connections()
            self._server.server_close()  # joins the request threads
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    """A request thread per connection, each joined when the server closes. A client keeps
    its connection open between requests (HTTP/1.1 keep-alive, huggingface_hub's pooled
    session), its thread waiting for the next request: close_connections ends those
    waits, and any transfer still under way, so the join returns."""

    daemon_threads = False  # server_close joins the request threads
    block_on_close = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # the client closed it already
                    pass

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a connection ended mid-request by close_connections, or by a client gone
        super().handle_error(request, client_address)


API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(?:/(.*))?)?$")
RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # ------------------------------------------------------------ routing

    def _serve(self, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        with self.hub._lock:
            self.hub.requests.append(Request(self.command, path, self.headers.get("Range")))
        if m := API.match(path):
            return self._api(m.group(1), m.group(2), m.group(3), m.group(4), parse_qs(split.query), head)
        if m := RESOLVE.match(path):
            return self._resolve(m.group(1), m.group(2), m.group(3), head)
        self._error(404, "EntryNotFound", "not found")

    def _repo(self, repo_id: str, revision: str | None) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if revision not in (None, "main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", repo)
            return None
        return repo

    def _api(self, repo_id, kind, revision, sub, query, head) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if kind == "tree":
            prefix = (sub or "").strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries, folders = [], set()
            for name in sorted(repo.files):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                rest = name[len(prefix) + 1:] if prefix else name
                parts = rest.split("/")
                for i in range(1, len(parts)):
                    folder = "/".join(([prefix] if prefix else []) + parts[:i])
                    if (recursive or i == 1) and folder not in folders:
                        folders.add(folder)
                        entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
                if recursive or len(parts) == 1:
                    entries.append(repo.files[name].tree_entry())
            return self._json(entries, repo, head)
        info = {
            "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "private": False,
            "gated": "manual" if repo.gated else False, "disabled": False, "library_name": "diffusers",
            "tags": ["diffusers"], "siblings": [{"rfilename": n} for n in sorted(repo.files)],
        }
        self._json(info, repo, head)

    def _resolve(self, repo_id, revision, filename, head) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        if repo.gated:
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                                  "to it and be authenticated to access it. Please log in.", repo)
        f = repo.files.get(filename)
        if f is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"", repo)
        data, status, start = f.data, 200, 0
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
                data = f.data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.git_oid}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if f.lfs:
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(len(f.data)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{len(f.data)}")
        self.end_headers()
        if head:
            return
        self._send_body(filename, data)

    def _send_body(self, filename: str, data: bytes) -> None:
        burst, pause = self.hub.throttle.get(filename, (len(data) or 1, 0.0))
        with self.hub._lock:
            cut = self.hub.cut_after.pop(filename, None)
        sent = 0
        try:
            while sent < len(data):
                n = burst if cut is None else min(burst, cut - sent)
                if n <= 0:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the client sees a body cut short
                    return
                self.wfile.write(data[sent:sent + n])
                self.wfile.flush()
                sent += n
                if pause and sent < len(data):
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (cancelled)
            self.close_connection = True

    # ------------------------------------------------------------ responses

    def _json(self, payload, repo: Repo, head: bool) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Repo-Commit", repo.sha)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, repo: Repo | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if repo is not None:
            self.send_header("X-Repo-Commit", repo.sha)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def point_hub_at(monkeypatch, url: str, cache: Path) -> None:
    """Send huggingface_hub (already imported, so its constants are already read) to `url`,
    with its cache in `cache`. Also sets the variables, for any subprocess."""
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_api.api, "endpoint", url)  # the module-level HfApi behind huggingface_hub.model_info


def go_offline(monkeypatch) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


TINY_SD = "fake-org/tiny-sd"
GATED_SD = "fake-org/gated-sd"
BIG_FILE = "vae/diffusion_pytorch_model.safetensors"  # the largest file: where a transfer is cut or cancelled


@contextmanager
def serving_tiny_sd(folder: Path, monkeypatch, cache: Path, extra: dict[str, bytes] | None = None):
    """A fake hub with the tiny SD pipeline (and a gated copy of it), huggingface_hub pointed at it."""
    with FakeHub() as h:
        h.add(Repo.from_folder(TINY_SD, folder, extra=extra))
        h.add(Repo.from_folder(GATED_SD, folder, gated=True))
        point_hub_at(monkeypatch, h.url, cache)
        yield h
