"""The store under concurrent use: writers of one key, readers beside writers, keys as names.

Real processes (forked) and real files; "old" versions are made old by backdating their folders
and, where retirement is what counts, by a writer whose clock runs an hour ahead per write.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import anndata as ad
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from perturb_assets.core.io import CorruptAssetError, StorageReadError, VersionedStore
from perturb_assets.core.io import store as store_module
from perturb_assets.defs.resources import build_resources

FORK = multiprocessing.get_context("fork")
N = 20_000
HOUR = 3600.0


def _table(value: int) -> pd.DataFrame:
    return pd.DataFrame({"v": np.full(N, value, dtype=np.int64)})


def _backdate(key: Path, seconds: float = HOUR) -> None:
    """Make every version folder (and its files) of ``key`` look ``seconds`` old."""
    stamp = time.time() - seconds
    for folder in key.glob("v-*"):
        for path in [folder, *folder.rglob("*")]:
            os.utime(path, (stamp, stamp))


def _retire_long_ago(key: Path, seconds: float = HOUR) -> None:
    """Rewrite the pointer as if its retired versions stopped being current long ago."""
    pointer_file = key / store_module.POINTER
    pointer = json.loads(pointer_file.read_text())
    pointer["retired"] = {v: t - seconds for v, t in pointer["retired"].items()}
    pointer_file.write_text(json.dumps(pointer))


def _put(root: str, key: tuple[str, ...], value: int, barrier) -> None:
    store = VersionedStore(root)
    barrier.wait(10)
    store.put(store.key(*key), _table(value))


def _assert_whole(store: VersionedStore, key, allowed: set[int]) -> None:
    value = store.get(key)["v"]
    assert len(value) == N and value.nunique() == 1 and int(value.iloc[0]) in allowed
    pointer = store.current(key)
    folder = Path(key.path) / pointer["version"]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == (
        sorted(pointer["files"])
    )


@pytest.mark.parametrize("trial", range(30))
def test_two_concurrent_writers_leave_one_whole_version_current(tmp_path, trial):
    """Writer A stores new content while writer B re-stores the unchanged value, whose version
    is an hour old; in half the trials the version B re-stores was also retired an hour ago,
    so A's write prunes it at the moment B reuses it."""
    store = VersionedStore(tmp_path)
    name = ("assets", "t", "p")
    key = store.key(*name)
    old, new = (1, 2)
    store.put(key, _table(old))
    if trial % 2:  # old is retired long ago and due for pruning; new is current
        store.put(key, _table(new))
        _retire_long_ago(Path(key.path))
    _backdate(Path(key.path))
    barrier = FORK.Barrier(2)
    writers = [
        FORK.Process(target=_put, args=(str(tmp_path), name, value, barrier))
        for value in (new, old)  # A stores (or re-stores) new, B re-stores old
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    _assert_whole(store, key, {old, new})


def _alternate(root: str, stop, clock_ahead: bool) -> None:
    store = VersionedStore(root)
    key = store.key("assets", "t", "p")
    if clock_ahead:  # every write happens "an hour after" the previous one
        real, writes = time.time, [0]

        def hour_per_write() -> float:
            return real() + writes[0] * HOUR

        store_module.time = type("Clock", (), {"time": staticmethod(hour_per_write)})
    i = 0
    while not stop.is_set():
        _backdate(Path(key.path))
        store.put(key, _anndata(i % 2))
        if clock_ahead:
            writes[0] += 1
        i += 1


def _anndata(value: int) -> ad.AnnData:
    """A zarr-stored value: a version deleted under a reader would read back as zeros."""
    return ad.AnnData(np.full((200, 50), value + 1.0, dtype=np.float32))


@pytest.mark.parametrize("clock_ahead", [False, True], ids=["hour_old_versions", "pruned_at_once"])
def test_a_reader_never_gets_wrong_data_while_versions_are_replaced(tmp_path, clock_ahead):
    """A reader loops while another process keeps replacing hour-old versions. With the real
    clock, replaced versions are retired *now*, so the reader never fails. With a writer whose
    clock runs an hour ahead per write, every version is pruned one write after it is replaced:
    the reader then retries the new version, and it never sees a partial value or zeros."""
    store = VersionedStore(tmp_path)
    key = store.key("assets", "t", "p")
    store.put(key, _anndata(0))
    stop = FORK.Event()
    writer = FORK.Process(target=_alternate, args=(str(tmp_path), stop, clock_ahead))
    writer.start()
    reads, refused, deadline = 0, 0, time.time() + 8
    try:
        while time.time() < deadline:
            try:
                x = store.get(key).X
            except StorageReadError as exc:  # only when the version keeps vanishing
                assert clock_ahead and not isinstance(exc, CorruptAssetError), exc
                refused += 1
                continue
            assert x.shape == (200, 50) and float(x.min()) == float(x.max()) in (1.0, 2.0)
            reads += 1
    finally:
        stop.set()
        writer.join(30)
    assert writer.exitcode == 0
    assert reads > 20
    assert refused == 0 if not clock_ahead else refused <= reads


# ------------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "part", ["../expression/p", "..", ".", "", "a/b", "a\\b", ".hidden", "x\ny", "CURRENT.json"]
)
def test_a_key_part_must_be_a_plain_name(tmp_path, part):
    store = VersionedStore(tmp_path)
    with pytest.raises(ValueError, match="plain name"):
        store.key("assets", "pseudobulk", part)


def test_the_store_refuses_a_key_that_leaves_its_folder(tmp_path):
    store = VersionedStore(tmp_path)
    victim = store.key("assets", "expression", "small")
    store.put(victim, _table(7))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    escaping = store.key("assets", "pseudobulk") / ".." / "expression" / "small"
    with pytest.raises(ValueError, match="plain name"):
        store.put(escaping, _table(31))
    with pytest.raises(ValueError, match="plain name"):
        store.get(escaping)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert store.get(victim)["v"].iloc[0] == 7


def test_the_io_manager_refuses_a_partition_that_is_a_path(tmp_path):
    """What the UI's "add partition" accepts must not reach another asset's folder."""
    io_manager = build_resources(tmp_path)["io_manager"].create_io_manager(None)
    store = VersionedStore(tmp_path)
    victim = store.key("assets", "expression", "small")
    store.put(victim, _table(7))
    output = dg.build_output_context(
        asset_key=dg.AssetKey("pseudobulk"),
        partition_key="../expression/small",
        asset_partitions_def=dg.StaticPartitionsDefinition(["../expression/small"]),
    )
    with pytest.raises(ValueError, match=r"partition of pseudobulk '\.\./expression/small'"):
        io_manager.handle_output(output, _table(31))
    assert store.get(victim)["v"].iloc[0] == 7
