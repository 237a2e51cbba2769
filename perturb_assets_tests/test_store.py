"""The versioned store: crash-safe writes, verified reads, garbage collection, S3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from perturb_assets.core.io import (
    CorruptAssetError,
    StorageReadError,
    VersionedStore,
    collect_garbage,
    local_files,
    pid_alive,
    sha256_file,
)
from perturb_assets.core.io import store as store_module
from perturb_assets.core.io.pointers import LOCK


def _adata(value: float = 1.0, n: int = 400) -> ad.AnnData:
    rng = np.random.default_rng(int(value))
    x = sp.random(n, 50, density=0.3, random_state=rng, dtype=np.float32) * value
    return ad.AnnData(sp.csr_matrix(x))


def test_round_trip_of_every_format_and_identical_content_is_one_version(tmp_path):
    store = VersionedStore(tmp_path)
    values = {
        "table": pd.DataFrame({"a": [1.0, 2.0]}, index=["x", "y"]),
        "manifest": {"sha256": "abc", "n": 3},
        "cells": _adata(),
    }
    for name, value in values.items():
        first = store.put(store.key("assets", name, "p"), value)
        again = store.put(store.key("assets", name, "p"), value)
        assert again.version == first.version  # deterministic bytes: same version
        versions = [e.name for e in store.key("assets", name, "p").iterdir()]
        assert sorted(versions) == sorted([LOCK, store_module.POINTER, first.version])
    pd.testing.assert_frame_equal(store.read("assets", "table", "p"), values["table"])
    assert store.read("assets", "manifest", "p") == values["manifest"]
    assert (store.read("assets", "cells", "p").X != values["cells"].X).nnz == 0


def test_a_failed_write_keeps_the_previous_version(tmp_path):
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    store.put(key, pd.DataFrame({"v": [1]}))

    class Unwritable(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        store.put(key, Unwritable({"v": [2]}))
    assert store.get(key)["v"].tolist() == [1]
    assert not [
        p for p in Path(key.path).iterdir() if p.name.startswith(store_module.STAGING_PREFIX)
    ]


WRITER = """
import sys, itertools
import pandas as pd
from perturb_assets.core.io.store import VersionedStore
store = VersionedStore(sys.argv[1])
key = store.key("assets", "t", "p")
print("ready", flush=True)
for i in itertools.count():
    store.put(key, pd.DataFrame({"v": [i % 2] * 20000}))
"""


def test_kill_at_any_instant_leaves_a_readable_version(tmp_path):
    """A writer is SIGKILLed at random instants while it keeps replacing the value: every
    time, the value read back is complete (one of the two it alternates between)."""
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    store.put(key, pd.DataFrame({"v": [1] * 20000}))
    rng = np.random.default_rng(0)
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        value = store.get(key)["v"]
        assert len(value) == 20000 and value.nunique() == 1
    # what the killed writers left behind is garbage, and collectable
    removed = collect_garbage(store, older_than_s=0)
    leftovers = (store_module.STAGING_PREFIX, f".{store_module.POINTER}.", "v-")
    assert all(Path(p).name.startswith((*leftovers, store_module.SCRATCH_PREFIX)) for p in removed)
    # the killed writers' scratch folders (perturb_store_<pid>_...) went with them
    scratch = Path(tempfile.gettempdir()).glob(f"{store_module.SCRATCH_PREFIX}*_*")
    pids = [p.name.split("_")[2] for p in scratch]
    assert not [pid for pid in pids if pid.isdigit() and not pid_alive(int(pid))]
    assert store.get(key)["v"].nunique() == 1


def test_swapped_zarr_chunks_are_caught_naming_the_file(tmp_path):
    store = VersionedStore(tmp_path)
    key = store.key("assets", "expression", "p")
    stored = store.put(key, _adata(3.0, n=5000))
    # two valid chunks of X's values (the corruption that went unnoticed before)
    chunks = Path(key.path, stored.version, "data.zarr", "X", "data")
    a, b = chunks / "0", chunks / "1"
    first, second = a.read_bytes(), b.read_bytes()
    assert first != second
    a.write_bytes(second)
    b.write_bytes(first)
    with pytest.raises(CorruptAssetError, match=str(a.relative_to(tmp_path)).replace(".", r"\.")):
        store.get(key)


def test_parse_errors_name_the_version(tmp_path):
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    stored = store.put(key, pd.DataFrame({"v": [1]}))
    # a file that matches its recorded hash but is no parquet (e.g. written by a broken tool)
    pointer = json.loads(Path(key.path, store_module.POINTER).read_text())
    garbage = b"not parquet at all"
    Path(key.path, stored.version, "data.parquet").write_bytes(garbage)
    pointer["files"]["data.parquet"] = __import__("hashlib").sha256(garbage).hexdigest()
    Path(key.path, store_module.POINTER).write_text(json.dumps(pointer))
    with pytest.raises(StorageReadError, match=f"{stored.version}: cannot read parquet"):
        store.get(key)
    Path(key.path, store_module.POINTER).write_text("{broken")
    with pytest.raises(StorageReadError, match="CURRENT.json: unreadable pointer"):
        store.get(key)
    with pytest.raises(FileNotFoundError, match="nothing stored at"):
        store.read("assets", "t", "other")


def test_old_versions_are_pruned_after_the_grace_period(tmp_path, monkeypatch):
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    old = store.put(key, pd.DataFrame({"v": [1]}))
    store.put(key, pd.DataFrame({"v": [2]}))
    assert Path(key.path, old.version).exists()  # a concurrent writer's version is kept
    monkeypatch.setattr(store_module, "PRUNE_AFTER_S", -1.0)
    new = store.put(key, pd.DataFrame({"v": [3]}))
    assert sorted(p.name for p in Path(key.path).iterdir()) == sorted(
        [LOCK, store_module.POINTER, new.version]
    )


def test_files_and_folders_are_stored_by_content(tmp_path):
    folder = tmp_path / "src" / "dataset"
    (folder / "embeddings").mkdir(parents=True)
    (folder / "perturb_processed.h5ad").write_bytes(b"h5")
    (folder / "embeddings" / "scgpt.parquet").write_bytes(b"pq")
    store = VersionedStore(tmp_path / "store")
    key = store.key("raw", "dataset")
    store.put(key, folder)
    local = store.local_folder(key, tmp_path / "unused")
    assert (local / "dataset" / "embeddings" / "scgpt.parquet").read_bytes() == b"pq"
    assert isinstance(store.get(key), Path)


# ----------------------------------------------------------------------------- S3 (moto)


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, with the standard AWS environment pointing at it."""
    moto_server = pytest.importorskip("moto.server")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("perturb-test")
    yield env
    server.stop()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_s3_round_trip_and_verification(s3_endpoint, tmp_path):
    store = VersionedStore("s3://perturb-test/store")
    assert not store.is_local
    key = store.key("assets", "cells", "synthetic")
    value = _adata(2.0)
    first = store.put(key, value)
    assert (store.get(key).X != value.X).nnz == 0
    table = pd.DataFrame({"v": [1.0]})
    second = store.put(key, table)
    pd.testing.assert_frame_equal(store.get(key), table)
    assert store.current(key)["version"] == second.version != first.version
    # tamper with one object of the current version: the read names it
    obj = key / second.version / "data.parquet"
    obj.write_bytes(b"tampered")
    with pytest.raises(CorruptAssetError, match="data.parquet: content differs"):
        store.get(key)


def test_s3_reads_and_copies_in_batches_and_names_a_missing_object(s3_endpoint, tmp_path):
    store = VersionedStore("s3://perturb-test/missing")
    key = store.key("assets", "cells", "synthetic")
    value = _adata(3.0)
    stored = store.put(key, value)
    assert len(stored.files) > 5  # a zarr AnnData: many objects, fetched in one batch
    folder = store.local_folder(key, tmp_path / "copy")
    copied = {rel: sha256_file(path) for rel, path in local_files(folder)}
    assert copied == stored.files
    victim = sorted(stored.files)[-1]
    (key / stored.version / victim).unlink()
    with pytest.raises(CorruptAssetError, match="files missing from the version"):
        store.get(key)
    with pytest.raises(CorruptAssetError, match="files missing from the version"):
        store.local_folder(key, tmp_path / "again")


def test_s3_reads_a_small_version_with_one_get_per_object(s3_endpoint, monkeypatch):
    # s3fs asks an object's size (HEAD) before its GET, in case it must split it into ranges;
    # a version smaller than one block holds no such object, so it is read without the HEADs.
    import s3fs

    store = VersionedStore("s3://perturb-test/requests")
    key = store.key("assets", "cells", "synthetic")
    stored = store.put(key, _adata(2.0))
    calls: list[str] = []
    call_s3 = s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):
        calls.append(method)
        return await call_s3(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    expected = _adata(2.0).X.toarray()
    np.testing.assert_array_equal(store.get(key).X.toarray(), expected)
    assert calls.count("get_object") == len(stored.files) + 1  # and the pointer
    assert "head_object" not in calls
    # A version bigger than a block is read as s3fs reads by default: sizes first, then ranges.
    monkeypatch.setattr(key.fs, "default_block_size", 256)
    calls.clear()
    np.testing.assert_array_equal(store.get(key).X.toarray(), expected)
    assert calls.count("head_object") == len(stored.files)


def test_s3_pointer_swap_is_conditional(s3_endpoint):
    """A pointer write with a stale ETag is refused (If-Match), so a writer that lost the race
    reads again; two writers in threads leave one whole version current."""
    import threading

    from perturb_assets.core.io import PointerConflict, Pointers

    store = VersionedStore("s3://perturb-test/cas")
    key = store.key("assets", "t", "p")
    store.put(key, pd.DataFrame({"v": [0] * 100}))
    pointers = Pointers(store.root)
    pointer, stale = pointers.read(key)
    store.put(key, pd.DataFrame({"v": [1] * 100}))  # moves the ETag on
    with pytest.raises(PointerConflict):
        pointers.write(key, pointer, stale)
    with pytest.raises(PointerConflict):  # creating a pointer that exists is refused too
        pointers.write(key, pointer, None)

    errors = []

    def write(value: int) -> None:
        try:
            for _ in range(5):
                VersionedStore("s3://perturb-test/cas").put(key, pd.DataFrame({"v": [value] * 100}))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    value = store.get(key)["v"]
    assert value.nunique() == 1 and value.iloc[0] in (2, 3)


def test_gc_keeps_what_the_instance_names_and_removes_the_rest(tmp_path, monkeypatch):
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    first = store.put(key, pd.DataFrame({"v": [1]}))
    second = store.put(key, pd.DataFrame({"v": [2]}))
    third = store.put(key, pd.DataFrame({"v": [3]}))
    folder = Path(key.path)
    pointer = json.loads((folder / store_module.POINTER).read_text())
    pointer["retired"] = {v: t - 7200 for v, t in pointer["retired"].items()}  # two hours ago
    (folder / store_module.POINTER).write_text(json.dumps(pointer))
    (folder / f".{store_module.POINTER}.{os.getpid()}-0123456789ab").write_bytes(b"")  # disk full
    removed = collect_garbage(store, older_than_s=3600, protect={"assets/t/p": {first.version}})
    names = {Path(p).name for p in removed}
    assert second.version in names and first.version not in names  # the instance names first
    assert f".{store_module.POINTER}.{os.getpid()}-0123456789ab" not in names  # too young
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("v-")) == sorted(
        [first.version, third.version]
    )
    assert store.get(key)["v"].item() == 3
    assert collect_garbage(store, older_than_s=0)  # the temporary, once old enough
    assert not list(folder.glob(f".{store_module.POINTER}.*"))
