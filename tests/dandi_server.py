"""A small DANDI-API server on 127.0.0.1 for offline tests of `nlbkit fetch`.

It answers the requests the `dandi` client (0.81) makes to find and download assets:

- `GET /server-info` (and `/api/info/`): what `dandi.utils.get_instance` checks for an unknown URL;
- `GET /api/dandisets/{id}/`, `/api/dandisets/{id}/versions/`, `/api/dandisets/{id}/versions/{v}/info/`;
- `GET /api/dandisets/{id}/versions/{v}/assets/?glob=&path=&page=&page_size=` (paginated listing);
- `GET /api/dandisets/{id}/versions/{v}/assets/{asset_id}/` (asset metadata with its digests);
- `GET /api/assets/{asset_id}/download/` (and the per-version form): a 302 to `/blobs/{asset_id}`,
  as the archive redirects to its object store;
- `GET /blobs/{asset_id}` and `GET /files/{name}`: the bytes, with `Range` support (206).

Faults for tests: `drop_after[key]` is a list of byte counts; each download of `key` (an asset id
or a file name) takes the next count and closes the connection after sending that many bytes of a
response that announced the full length. `fail(pattern, status, times)` answers `status` to
requests whose path matches the regular expression `pattern`, `times` times (None: always).
`stall_after[key]` is the same, except that the server then stops sending without closing the
connection for `stall_s` seconds (a download to interrupt). `ignore_range` makes downloads answer
200 with the whole body even to a Range request.
Every request is recorded in `requests` (method, path, query, headers).

The server runs in daemon threads and stops by itself after `lifetime_s` seconds.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from dandischema.digests.dandietag import ETagHashlike

TIMESTAMP = "2022-01-13T04:07:00.000000Z"
PAGE_SIZE = 100


@dataclass
class ServedAsset:
    asset_id: str
    path: str
    content: bytes
    etag: str
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class _Fault:
    pattern: re.Pattern
    status: int
    times: int | None


@dataclass
class _Dandiset:
    identifier: str
    published: list[str]  # oldest first
    assets: dict[str, list[ServedAsset]] = field(default_factory=dict)  # version -> assets


def dandi_etag(content: bytes) -> str:
    hasher = ETagHashlike(len(content))
    hasher.update(content)
    return hasher.hexdigest()


class DandiServer:
    """The server; use as a context manager or call `start()` / `stop()`."""

    def __init__(self, lifetime_s: float = 120.0) -> None:
        self.lifetime_s = lifetime_s
        self.dandisets: dict[str, _Dandiset] = {}
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, list[int]] = {}
        self.stall_after: dict[str, list[int]] = {}  # like drop_after, but then hang for stall_s
        self.stall_s = 20.0
        self.ignore_range = False  # answer Range requests with the whole body (200), as some servers do
        self.requests: list[Recorded] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None
        self._stopped = threading.Event()

    # -- content -----------------------------------------------------------------------------
    def add_asset(self, dandiset_id: str, version: str, path: str, content: bytes) -> ServedAsset:
        """Serve `content` as asset `path` of `dandiset_id` at `version` ('draft' or published)."""
        ds = self.dandisets.setdefault(dandiset_id, _Dandiset(dandiset_id, []))
        if version != "draft" and version not in ds.published:
            ds.published.append(version)
        asset_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{dandiset_id}/{version}/{path}"))
        asset = ServedAsset(
            asset_id, path, content, dandi_etag(content), hashlib.sha256(content).hexdigest()
        )
        assets = ds.assets.setdefault(version, [])
        assets[:] = [a for a in assets if a.path != path] + [asset]
        return asset

    def add_file(self, name: str, content: bytes) -> str:
        """Serve `content` at `/files/<name>`; returns its URL."""
        self.files[name] = content
        return f"{self.base_url}/files/{name}"

    def fail(self, pattern: str, status: int, times: int | None = None) -> None:
        self._faults.append(_Fault(re.compile(pattern), status, times))

    def clear_faults(self) -> None:
        self._faults.clear()
        self.drop_after.clear()

    def requests_to(self, pattern: str) -> list[Recorded]:
        """The recorded requests whose path matches the regular expression `pattern`."""
        with self._lock:
            return [r for r in self.requests if re.search(pattern, r.path)]

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    def start(self) -> DandiServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> DandiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for the handler ----------------------------------------------------------------
    def _record(self, handler: BaseHTTPRequestHandler, path: str, query: dict) -> None:
        with self._lock:
            self.requests.append(Recorded(handler.command, path, query, dict(handler.headers)))

    def _fault_for(self, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.pattern.search(path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault.status
        return None

    def _next_drop(self, key: str) -> int | None:
        return self._next_count(self.drop_after, key)

    def _next_count(self, table: dict[str, list[int]], key: str) -> int | None:
        with self._lock:
            counts = table.get(key)
            return counts.pop(0) if counts else None

    def _find_asset(self, asset_id: str) -> ServedAsset | None:
        for ds in self.dandisets.values():
            for assets in ds.assets.values():
                for asset in assets:
                    if asset.asset_id == asset_id:
                        return asset
        return None


def _version_json(ds: _Dandiset, version: str) -> dict:
    assets = ds.assets.get(version, [])
    return {
        "version": version,
        "name": f"dandiset {ds.identifier}",
        "asset_count": len(assets),
        "size": sum(a.size for a in assets),
        "created": TIMESTAMP,
        "modified": TIMESTAMP,
        "status": "Published" if version != "draft" else "Valid",
    }


def _asset_json(asset: ServedAsset) -> dict:
    return {
        "asset_id": asset.asset_id,
        "blob": asset.asset_id,
        "zarr": None,
        "path": asset.path,
        "size": asset.size,
        "created": TIMESTAMP,
        "modified": TIMESTAMP,
    }


class _Handler(BaseHTTPRequestHandler):
    server_state: DandiServer
    timeout = 30  # a stuck client cannot hold a server thread forever

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        state = self.server_state
        state._record(self, path, query)
        status = state._fault_for(path)
        if status is not None:
            return self._json({"detail": f"injected error {status}"}, status)
        try:
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path: str, query: dict) -> None:
        state = self.server_state
        if path in ("/server-info", "/api/info/"):
            return self._json(self._server_info())
        if m := re.fullmatch(r"/blobs/([^/]+)", path):
            asset = state._find_asset(m.group(1))
            return self._bytes(asset.content, m.group(1)) if asset else self._not_found()
        if m := re.fullmatch(r"/files/([^/]+)", path):
            content = state.files.get(m.group(1))
            return self._bytes(content, m.group(1)) if content is not None else self._not_found()
        if m := re.fullmatch(r"/api/(?:dandisets/\d+/versions/[^/]+/)?assets/([^/]+)/download/", path):
            if state._find_asset(m.group(1)) is None:
                return self._not_found()
            return self._redirect(f"{state.base_url}/blobs/{m.group(1)}")
        m = re.fullmatch(r"/api/dandisets/(\d+)/(.*)", path)
        ds = state.dandisets.get(m.group(1)) if m else None
        if ds is None:
            return self._not_found()
        return self._dandiset_route(ds, m.group(2), query)

    def _dandiset_route(self, ds: _Dandiset, rest: str, query: dict) -> None:
        if rest == "":
            latest = _version_json(ds, ds.published[-1]) if ds.published else None
            return self._json({
                "identifier": ds.identifier,
                "created": TIMESTAMP,
                "modified": TIMESTAMP,
                "contact_person": "Test Person",
                "embargo_status": "OPEN",
                "most_recent_published_version": latest,
                "draft_version": _version_json(ds, "draft"),
            })
        if rest == "versions/":
            versions = [_version_json(ds, v) for v in [*ds.published, "draft"]]
            return self._page(versions, query)
        m = re.fullmatch(r"versions/([^/]+)/(.*)", rest)
        if m is None or (m.group(1) not in ds.published and m.group(1) != "draft"):
            return self._not_found()
        version, tail = m.groups()
        assets = ds.assets.get(version, [])
        if tail == "info/":
            return self._json(
                {**_version_json(ds, version), "asset_validation_errors": [], "version_validation_errors": []}
            )
        if tail == "assets/":
            return self._page([_asset_json(a) for a in self._select(assets, query)], query)
        if m := re.fullmatch(r"assets/([^/]+)/", tail):
            asset = next((a for a in assets if a.asset_id == m.group(1)), None)
            return self._json(self._metadata(asset)) if asset else self._not_found()
        return self._not_found()

    @staticmethod
    def _select(assets: list[ServedAsset], query: dict) -> list[ServedAsset]:
        selected = sorted(assets, key=lambda a: a.path)
        if "glob" in query:
            selected = [a for a in selected if fnmatch.fnmatchcase(a.path, query["glob"][0])]
        if "path" in query:
            selected = [a for a in selected if a.path.startswith(query["path"][0])]
        return selected

    def _metadata(self, asset: ServedAsset) -> dict:
        return {
            "id": f"dandiasset:{asset.asset_id}",
            "path": asset.path,
            "contentSize": asset.size,
            "encodingFormat": "application/x-nwb",
            "digest": {"dandi:dandi-etag": asset.etag, "dandi:sha2-256": asset.sha256},
            "contentUrl": [f"{self.server_state.api_url}/assets/{asset.asset_id}/download/"],
            "blobDateModified": TIMESTAMP,
        }

    def _server_info(self) -> dict:
        base = self.server_state.base_url
        return {
            "version": "0.0.0-test",
            "services": {"api": {"url": f"{base}/api"}, "webui": {"url": base}},
            "cli-minimal-version": "0.60.0",
            "cli-bad-versions": [],
        }

    # -- responses -----------------------------------------------------------------------------
    def _page(self, items: list, query: dict) -> None:
        size = int(query.get("page_size", [PAGE_SIZE])[0])
        page = int(query.get("page", ["1"])[0])
        chunk = items[(page - 1) * size : page * size]
        nxt = None
        if page * size < len(items):
            params = {k: v[0] for k, v in query.items()} | {"page": page + 1}
            nxt = f"{self.server_state.base_url}{urlsplit(self.path).path}?{urlencode(params)}"
        self._json({"count": len(items), "next": nxt, "previous": None, "results": chunk})

    def _json(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self) -> None:
        self._json({"detail": "Not found."}, 404)

    def _redirect(self, url: str) -> None:
        self.send_response(302)
        self.send_header("Location", url)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _bytes(self, content: bytes, key: str) -> None:
        start, status = 0, 200
        range_header = "" if self.server_state.ignore_range else self.headers.get("Range", "")
        if m := re.fullmatch(r"bytes=(\d+)-", range_header):
            start, status = int(m.group(1)), 206
            if start >= len(content):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(content)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = content[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        stall = self.server_state._next_count(self.server_state.stall_after, key)
        if stall is not None and self.command == "GET":
            self.wfile.write(body[:stall])
            self.wfile.flush()
            self.server_state._stopped.wait(self.server_state.stall_s)
            self.close_connection = True
            return
        drop = self.server_state._next_drop(key) if self.command == "GET" else None
        if drop is not None:
            # Announce the full length, send part of it, then cut the connection.
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


def running_server(monkeypatch, lifetime_s: float = 120.0):
    """Body of a pytest fixture: a started server, stopped afterwards.

    nlbkit reads in small chunks here, so that a connection cut mid-file has delivered whole
    chunks before the cut (a cut loses the chunk being read).
    """
    import nlbkit.fetch.download

    monkeypatch.setattr(nlbkit.fetch.download, "CHUNK_BYTES", 16 * 1024)
    with DandiServer(lifetime_s=lifetime_s) as srv:
        yield srv
