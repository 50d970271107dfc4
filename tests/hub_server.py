"""A Hub-compatible HTTP server on 127.0.0.1, for tests: the few routes
``huggingface_hub.snapshot_download`` uses (repo info at a revision, the file tree, file
resolution with its ``X-Repo-Commit`` and ``ETag`` headers), over files held in memory."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class Hub:
    """``repos``: repo id -> commit -> {path in repo: bytes}; ``refs``: repo -> branch -> commit.
    ``requests`` records (method, path) of every request."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []

    def add_folder(self, repo: str, commit: str, root: Path, branch: str = "main") -> None:
        files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        self.repos.setdefault(repo, {})[commit] = files
        self.refs.setdefault(repo, {})[branch] = commit

    def _lookup(self, repo: str, revision: str) -> tuple[str | None, dict[str, bytes] | None]:
        commits = self.repos.get(repo)
        if commits is None:
            return None, None
        commit = self.refs.get(repo, {}).get(revision, revision)
        return commit, commits.get(commit)


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes = b"", headers: tuple = ()) -> None:
            self.send_response(code)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _not_found(self) -> None:
            self._send(404, b'{"error": "Repository not found"}',
                       (("X-Error-Code", "RepositoryNotFound"), ("Content-Type", "application/json")))

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(self.path.split("?")[0])
            hub.requests.append((self.command, path))
            if path.startswith("/api/models/"):
                rest = path[len("/api/models/"):]
                if "/tree/" in rest:
                    repo, _, revision = rest.partition("/tree/")
                    commit, files = hub._lookup(repo, revision.split("/")[0])
                    if files is None:
                        return self._not_found()
                    entries = [{"type": "file", "path": f, "size": len(d),
                                "oid": hashlib.sha1(d).hexdigest()} for f, d in sorted(files.items())]
                    return self._send(200, json.dumps(entries).encode(),
                                      (("Content-Type", "application/json"),))
                repo, _, revision = rest.partition("/revision/")
                commit, files = hub._lookup(repo, revision or "main")
                if files is None:
                    return self._not_found()
                info = {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in sorted(files)]}
                return self._send(200, json.dumps(info).encode(), (("Content-Type", "application/json"),))
            parts = path.strip("/").split("/")
            if "resolve" in parts:
                i = parts.index("resolve")
                commit, files = hub._lookup("/".join(parts[:i]), parts[i + 1])
                name = "/".join(parts[i + 2:])
                if files is None or name not in files:
                    return self._send(404, b"", (("X-Error-Code", "EntryNotFound"),))
                data = files[name]
                return self._send(200, data, (("X-Repo-Commit", commit),
                                              ("ETag", f'"{hashlib.sha256(data).hexdigest()}"'),
                                              ("Content-Type", "application/octet-stream")))
            self._send(404)

    return Handler


def serve(hub: Hub) -> ThreadingHTTPServer:
    """Start serving ``hub`` on a free loopback port (``server.server_address``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
