"""Tests of perturb_assets.core.io.download against a local HTTP server (no external host)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import requests
import scipy.sparse as sp

from perturb_assets.core.datasets import archive_path, builtin_dataset_dir, fetch_gears_dataset
from perturb_assets.core.errors import DatasetError
from perturb_assets.core.gears import FILENAME as GEARS_FILENAME
from perturb_assets.core.io import (
    DATAVERSE_URL,
    DATAVERSE_URL_ENV,
    DownloadError,
    dataverse_url,
    download_file,
    extract_gears_archive,
    is_retryable,
)

PAYLOAD = np.random.default_rng(7).bytes(200_000)


def make_adata() -> ad.AnnData:
    """50 cells x 20 genes, log-normalised, conditions ctrl / G0+ctrl / G1+ctrl / G0+G1."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(50, 20)).astype(np.float32)
    counts[:, 0] += 1
    x = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    conds = ["ctrl", "G0+ctrl", "G1+ctrl", "G0+G1"]
    obs = pd.DataFrame(
        {"condition": [conds[i % 4] for i in range(50)], "cell_type": "K562"},
        index=[f"cell{i}" for i in range(50)],
    )
    var = pd.DataFrame(
        {"gene_name": [f"G{i}" for i in range(20)]},
        index=[f"ENSG{i:011d}" for i in range(20)],
    )
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=var)


def gears_zip_bytes(tmp_path: Path, name: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip archive laid out like the GEARS Dataverse ones: <name>/perturb_processed.h5ad."""
    h5ad = tmp_path / f"{name}-src.h5ad"
    make_adata().write_h5ad(h5ad)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(h5ad, f"{name}/{GEARS_FILENAME}")
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buf.getvalue()


class FakeServer:
    """Routes of the local test server: path -> (mode, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.base_url = ""


def _make_handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _send_body(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                hit = state.hits.get(self.path, 0)
                state.hits[self.path] = hit + 1
            route = state.routes.get(self.path)
            if route is None:
                self._send_body(404, b"not found", {})
                return
            mode, body = route
            if mode.startswith("status:"):
                self._send_body(int(mode.split(":")[1]), b"<html>error</html>", {})
                return
            if mode == "interrupt_once" and hit == 0:
                # Promise the whole body but close after half of it.
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if rng and mode in {"range", "interrupt_once"}:
                match = re.fullmatch(r"bytes=(\d+)-", rng)
                start = int(match.group(1)) if match else -1
                if start < 0 or start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send_body(
                    206,
                    body[start:],
                    {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
                )
                return
            # mode "range" without Range header, or "norange": full body with 200.
            self._send_body(200, body, {"Accept-Ranges": "bytes" if mode == "range" else "none"})

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- download_file


def test_plain_download_writes_sidecar(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("range", PAYLOAD)
    dest = tmp_path / "sub" / "f.zip"
    res = download_file(f"{server.base_url}/f", dest, expected_sha256=sha(PAYLOAD).upper())
    assert res.path == dest
    assert res.sha256 == sha(PAYLOAD)
    assert res.n_bytes == len(PAYLOAD)
    assert res.resumed is False
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "f.zip.part").exists()
    assert (tmp_path / "sub" / "f.zip.sha256").read_text() == f"{sha(PAYLOAD)}  f.zip\n"
    # A second call finds the verified file and does not download again.
    again = download_file(f"{server.base_url}/f", dest)
    assert again.sha256 == sha(PAYLOAD)
    assert server.hits["/f"] == 1


def test_interrupted_download_resumes(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("interrupt_once", PAYLOAD)
    url = f"{server.base_url}/f"
    dest = tmp_path / "f.zip"
    part = tmp_path / "f.zip.part"
    with pytest.raises(DownloadError) as exc:
        download_file(url, dest, chunk_size=4096)
    assert is_retryable(exc.value)
    assert url in str(exc.value)
    assert "interrupted" in str(exc.value) or "short" in str(exc.value)
    assert part.is_file()
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert not dest.exists()

    res = download_file(url, dest, expected_sha256=sha(PAYLOAD), chunk_size=4096)
    assert res.resumed is True
    assert res.sha256 == sha(PAYLOAD)
    assert res.n_bytes == len(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/f", f"bytes={kept}-")
    assert not part.exists()


def test_server_ignoring_range_restarts(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("norange", PAYLOAD)
    dest = tmp_path / "f.zip"
    (tmp_path / "f.zip.part").write_bytes(b"stale bytes from another file")
    res = download_file(f"{server.base_url}/f", dest)
    assert server.requests[-1][1] is not None  # a Range request was sent ...
    assert res.resumed is False  # ... ignored (200), so the download restarted
    assert res.sha256 == sha(PAYLOAD)
    assert dest.read_bytes() == PAYLOAD


def test_416_with_complete_part(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("range", PAYLOAD)
    dest = tmp_path / "f.zip"
    (tmp_path / "f.zip.part").write_bytes(PAYLOAD)
    res = download_file(f"{server.base_url}/f", dest, expected_sha256=sha(PAYLOAD))
    assert res.resumed is True
    assert dest.read_bytes() == PAYLOAD


def test_416_with_oversized_part_restarts(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("range", PAYLOAD)
    dest = tmp_path / "f.zip"
    (tmp_path / "f.zip.part").write_bytes(PAYLOAD + b"junk")
    res = download_file(f"{server.base_url}/f", dest)
    assert res.resumed is False
    assert res.sha256 == sha(PAYLOAD)


def test_403_mentions_mirror_env_and_is_retryable(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("status:403", b"")
    url = f"{server.base_url}/f"
    with pytest.raises(DownloadError) as exc:
        download_file(url, tmp_path / "f.zip")
    message = str(exc.value)
    assert url in message
    assert "403" in message
    assert DATAVERSE_URL_ENV in message
    assert exc.value.status == 403
    assert is_retryable(exc.value)
    assert not (tmp_path / "f.zip").exists()


def test_404_is_not_retryable(server: FakeServer, tmp_path: Path) -> None:
    url = f"{server.base_url}/missing"
    with pytest.raises(DownloadError) as exc:
        download_file(url, tmp_path / "f.zip")
    assert "404" in str(exc.value)
    assert url in str(exc.value)
    assert not is_retryable(exc.value)


def test_5xx_is_retryable(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("status:503", b"")
    with pytest.raises(DownloadError) as exc:
        download_file(f"{server.base_url}/f", tmp_path / "f.zip")
    assert exc.value.status == 503
    assert is_retryable(exc.value)


def test_connection_error_is_retryable(tmp_path: Path) -> None:
    # Bind and close a socket to get a local port nothing listens on.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as exc:
        download_file(f"http://127.0.0.1:{port}/f", tmp_path / "f.zip", timeout=5)
    assert is_retryable(exc.value)
    assert is_retryable(requests.ConnectionError("boom"))
    assert is_retryable(requests.Timeout("slow"))
    assert not is_retryable(ValueError("nope"))


def test_checksum_mismatch(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/f"] = ("range", PAYLOAD)
    dest = tmp_path / "f.zip"
    with pytest.raises(DownloadError, match="checksum") as exc:
        download_file(f"{server.base_url}/f", dest, expected_sha256="0" * 64)
    assert not is_retryable(exc.value)
    assert not dest.exists()
    assert not (tmp_path / "f.zip.part").exists()


class _ShortResponse:
    """A response that announces more bytes than it delivers, without raising."""

    status_code = 200
    reason = "OK"

    def __init__(self, body: bytes, announced: int) -> None:
        self.body = body
        self.headers = {"Content-Length": str(announced)}

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield self.body

    def __enter__(self) -> _ShortResponse:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class _ShortSession:
    def get(self, url: str, **kwargs: object) -> _ShortResponse:
        return _ShortResponse(b"abc", 10)


def test_short_read_keeps_part(tmp_path: Path) -> None:
    dest = tmp_path / "f.zip"
    with pytest.raises(DownloadError, match="got 3 of 10 bytes") as exc:
        download_file("http://mirror.invalid/f", dest, session=_ShortSession())  # type: ignore[arg-type]
    assert is_retryable(exc.value)
    assert (tmp_path / "f.zip.part").read_bytes() == b"abc"
    assert not dest.exists()


# ----------------------------------------------------------------------------- urls


def test_dataverse_url_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATAVERSE_URL_ENV, raising=False)
    assert dataverse_url(6154020) == DATAVERSE_URL.format(file_id=6154020)
    assert dataverse_url(6154020) == "https://dataverse.harvard.edu/api/access/datafile/6154020"
    monkeypatch.setenv(DATAVERSE_URL_ENV, "http://mirror.local/files/{file_id}.zip")
    assert dataverse_url(1) == "http://mirror.local/files/1.zip"
    assert dataverse_url(1, "http://other/{file_id}") == "http://other/1"
    with pytest.raises(ValueError, match="file_id"):
        dataverse_url(1, "http://other/no-placeholder")


# ----------------------------------------------------------------------------- extraction


def test_extract_gears_archive(tmp_path: Path) -> None:
    archive = tmp_path / "norman.zip"
    archive.write_bytes(gears_zip_bytes(tmp_path, "norman", {"norman/go.csv": b"a,b\n"}))
    dest = tmp_path / "gears" / "norman"
    out = extract_gears_archive(archive, dest)
    assert out == dest
    assert (dest / GEARS_FILENAME).is_file()
    assert (dest / "go.csv").read_bytes() == b"a,b\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["norman"]
    with pytest.raises(FileExistsError):
        extract_gears_archive(archive, dest)
    assert extract_gears_archive(archive, dest, overwrite=True) == dest


def test_bad_archive_not_zip(tmp_path: Path) -> None:
    archive = tmp_path / "norman.zip"
    archive.write_bytes(b"<html>Dataverse is down</html>")
    dest = tmp_path / "gears" / "norman"
    with pytest.raises(DownloadError) as exc:
        extract_gears_archive(archive, dest)
    assert "norman.zip" in str(exc.value)
    assert "not a zip" in str(exc.value)
    assert not is_retryable(exc.value)
    assert not dest.exists()


def test_corrupt_zip(tmp_path: Path) -> None:
    data = bytearray(gears_zip_bytes(tmp_path, "norman"))
    # Flip bytes inside the compressed member data (after the local header).
    for i in range(200, 600):
        data[i] ^= 0xFF
    archive = tmp_path / "norman.zip"
    archive.write_bytes(bytes(data))
    dest = tmp_path / "gears" / "norman"
    with pytest.raises(DownloadError, match="norman.zip"):
        extract_gears_archive(archive, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temporary folder left behind


def test_zip_slip_rejected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"norman/{GEARS_FILENAME}", b"x")
        zf.writestr("../../evil.txt", b"pwned")
    archive = tmp_path / "evil.zip"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "a" / "b" / "norman"
    with pytest.raises(DownloadError, match=r"unsafe member '\.\./\.\./evil\.txt'"):
        extract_gears_archive(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "a" / "evil.txt").exists()
    assert not dest.exists()


def test_absolute_member_rejected(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("/tmp/evil.txt", b"pwned")
    archive = tmp_path / "abs.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="absolute path"):
        extract_gears_archive(archive, tmp_path / "out")


def test_archive_without_h5ad(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("norman/readme.txt", b"hi")
    archive = tmp_path / "norman.zip"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match=GEARS_FILENAME):
        extract_gears_archive(archive, dest)
    assert not dest.exists()


# ----------------------------------------------------------------------------- fetch


def test_fetch_gears_dataset_end_to_end(server: FakeServer, tmp_path: Path) -> None:
    body = gears_zip_bytes(tmp_path, "adamson")
    server.routes["/api/access/datafile/6154417"] = ("range", body)
    template = f"{server.base_url}/api/access/datafile/{{file_id}}"
    root = tmp_path / "data"
    folder = fetch_gears_dataset("adamson", root, url_template=template)
    assert folder == builtin_dataset_dir("adamson", root) == root / "gears" / "adamson"
    assert (folder / GEARS_FILENAME).is_file()
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["url"] == f"{server.base_url}/api/access/datafile/6154417"
    assert prov["sha256"] == sha(body)
    assert prov["bytes"] == len(body)
    assert prov["file_id"] == 6154417
    assert "fetched_at" in prov
    assert archive_path("adamson", root).is_file()
    # Second fetch: folder present and valid, nothing downloaded.
    assert fetch_gears_dataset("adamson", root, url_template=template) == folder
    assert server.hits["/api/access/datafile/6154417"] == 1


def test_fetch_uses_env_mirror(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/mirror/6154020.zip"] = ("range", gears_zip_bytes(tmp_path, "norman"))
    monkeypatch.setenv(DATAVERSE_URL_ENV, f"{server.base_url}/mirror/{{file_id}}.zip")
    folder = fetch_gears_dataset("norman", tmp_path / "data")
    assert (folder / GEARS_FILENAME).is_file()


def test_fetch_bad_archive_leaves_no_folder(server: FakeServer, tmp_path: Path) -> None:
    server.routes["/df/6154020"] = ("range", b"<html>not a zip</html>")
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="not a zip"):
        fetch_gears_dataset("norman", root, url_template=f"{server.base_url}/df/{{file_id}}")
    assert not (root / "gears" / "norman").exists()
    assert not archive_path("norman", root).exists()  # deleted, so a retry downloads again


def test_fetch_invalid_dataset_in_archive(server: FakeServer, tmp_path: Path) -> None:
    adata = make_adata()
    adata.obs["condition"] = "G0+G1+G2"
    h5ad = tmp_path / "bad.h5ad"
    adata.write_h5ad(h5ad)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(h5ad, f"norman/{GEARS_FILENAME}")
    server.routes["/df/6154020"] = ("range", buf.getvalue())
    with pytest.raises(DatasetError, match="obs\\['condition'\\]"):
        fetch_gears_dataset(
            "norman", tmp_path / "data", url_template=f"{server.base_url}/df/{{file_id}}"
        )


def test_fetch_rejects_unknown_and_synthetic(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a downloadable"):
        fetch_gears_dataset("synthetic", tmp_path)
    with pytest.raises(ValueError, match="not a downloadable"):
        fetch_gears_dataset("dixit", tmp_path)
    with pytest.raises(ValueError, match="invalid dataset name"):
        fetch_gears_dataset("../norman", tmp_path)
