"""Benchmark of the dataset layer: pseudobulk means and DE genes against the obvious references.

Run::

    python -m perturb_assets.benchmarks.dataset_layer            # Replogle-sized (default)
    python -m perturb_assets.benchmarks.dataset_layer --quick    # 20,000 x 2,000, 200 perts

It builds a Replogle-K562-sized dataset (default 160,000 cells x 5,000 genes, 1,100
perturbations plus control cells; sparse CSR float32, normalised to 10,000 counts and
``log1p``'d) with the project simulator
:func:`perturb_assets.core.simulation.simulate_perturbseq` when it can be imported (without its
GEARS DE fields), else with :func:`make_benchmark_adata` (``--generator`` chooses), then
measures, each in a fresh process:

* :func:`perturb_assets.core.pp.pseudobulk` against
  ``adata.to_df().groupby(adata.obs["condition"], observed=True).mean()`` (targets: >= 20x
  faster, <= 1/10 of the peak memory), checking that the means agree (``np.allclose``); and
  against what a scverse user would pick: ``sc.get.aggregate(adata, by="condition",
  func="mean")`` and decoupler's ``dc.pp.pseudobulk(..., mode="mean")`` (same check);
* the memory-read floor: one parallel pass over ``X.data`` and ``X.indices`` (what any
  pseudo-bulk must read at least), so the table says how close ``pseudobulk`` is to the limit;
* :func:`perturb_assets.core.pp.top_de_genes` (t-test, ``n_top=20``) against
  ``sc.tl.rank_genes_groups(..., reference="ctrl", rankby_abs=True, use_raw=False,
  method="t-test", n_genes=20)`` (target: >= 5x faster), requiring identical gene lists;
* the same for ``method="wilcoxon"`` (ratio reported, no target), requiring identical lists.
  scanpy's Wilcoxon densifies and ranks the group plus *all* control cells once per group,
  which takes tens of minutes at full size, so both are measured on the same stratified
  subsample of ``--wilcoxon-cells`` cells (every condition keeps the same fraction of its
  cells, at least 3). ``top_de_genes`` Wilcoxon on the full dataset is timed as well, for
  information. pdex (the DE engine behind cell-eval; Mann-Whitney U against ``ctrl``) runs on
  the same subsample; it ranks by tie-corrected p-value rather than by ``|z|``, so the table
  gives the share of top-20 genes it shares with ours instead of "identical".

How time and memory are measured
--------------------------------
The dataset is written once to a work folder as raw ``.npy`` arrays. Every measurement runs in
a new Python process (``--worker``) that loads the arrays (no large temporaries), runs the
method once on a tiny dataset to compile numba kernels and warm imports (scanpy's and ours
alike), then ``--repeats`` times (default 3; Wilcoxon always once, ours and scanpy's): resets
the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), runs the method, and
records wall time (``time.perf_counter``) and *peak extra memory*: ``VmHWM`` after the call
minus ``VmRSS`` before it, i.e. the most memory the call held on top of the loaded dataset,
native allocations (scipy, numba, pandas) included. The fastest time and the largest peak are
reported. Where the peak counter cannot be reset, ``ru_maxrss`` is used instead (named in the
output). Timings on a shared machine are noisy: other processes slow ours (two numba threads)
and the single-threaded references alike, but not by the same factor.

The final table is printed in Markdown.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from perturb_assets.benchmarks.dataset_layer_data import (
    build_dataset,
    load_dataset,
    make_benchmark_adata,
    save_dataset,
    stratified_subsample,
)

__all__ = [
    "main",
    "make_benchmark_adata",
]  # make_benchmark_adata: re-exported from dataset_layer_data

_FULL = {"cells": 160_000, "genes": 5_000, "perturbations": 1_100}
_QUICK = {"cells": 20_000, "genes": 2_000, "perturbations": 200}
_DEFAULT_WILCOXON_CELLS = 10_000
_N_TOP = 20


# --------------------------------------------------------------------------------------------
# Workers (one fresh process per measurement)
# --------------------------------------------------------------------------------------------


def _proc_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _measure(fn: Callable[[], Any]) -> tuple[Any, float, int, str]:
    """Run ``fn`` once: (result, seconds, peak extra bytes, memory method)."""
    gc.collect()
    rss_before = _proc_status()["VmRSS"]
    reset = _reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if reset:
        peak, how = _proc_status()["VmHWM"], "VmHWM"
    else:
        peak, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"
    return result, seconds, max(0, peak - rss_before), how


def _task_fn(task: str) -> Callable[[AnnData], Any]:
    """The function a worker measures."""
    if task == "pseudobulk":
        from perturb_assets.core.pp.pseudobulk import pseudobulk

        return lambda a: pseudobulk(a, "condition")
    if task == "pandas_groupby":
        return lambda a: a.to_df().groupby(a.obs["condition"], observed=True).mean()
    if task in ("scanpy_aggregate", "decoupler_pseudobulk", "read_floor"):
        return _alternative_pseudobulk(task)
    if task == "pdex_wilcoxon":
        return _pdex_top_genes
    if task in ("ttest", "wilcoxon"):
        from perturb_assets.core.pp.de import top_de_genes

        method = "t-test" if task == "ttest" else "wilcoxon"
        return lambda a: top_de_genes(a, method=method, n_top=_N_TOP)
    if task in ("scanpy_ttest", "scanpy_wilcoxon"):
        import scanpy as sc

        method = "t-test" if task == "scanpy_ttest" else "wilcoxon"

        def run(a: AnnData) -> dict[str, list[str]]:
            sc.tl.rank_genes_groups(
                a,
                groupby="condition",
                reference="ctrl",
                rankby_abs=True,
                use_raw=False,
                method=method,
                n_genes=_N_TOP,
            )
            names = a.uns["rank_genes_groups"]["names"]
            return {g: [str(v) for v in names[g]] for g in names.dtype.names}

        return run
    raise ValueError(f"unknown task {task!r}")


def _alternative_pseudobulk(task: str) -> Callable[[AnnData], Any]:
    """What a scverse user would reach for instead of :func:`pseudobulk`, and the floor."""
    if task == "scanpy_aggregate":
        import scanpy as sc

        def aggregate(a: AnnData) -> pd.DataFrame:
            means = sc.get.aggregate(a, by="condition", func="mean")
            return pd.DataFrame(means.layers["mean"], index=means.obs_names, columns=a.var_names)

        return aggregate
    if task == "decoupler_pseudobulk":
        import decoupler as dc

        def decoupler_means(a: AnnData) -> pd.DataFrame:
            means = dc.pp.pseudobulk(
                a, sample_col="condition", groups_col=None, mode="mean", skip_checks=True
            )
            return pd.DataFrame(np.asarray(means.X), index=means.obs_names, columns=a.var_names)

        return decoupler_means
    return lambda a: {"checksum": [str(_read_floor(a.X.data, a.X.indices))]}


@functools.cache
def _read_floor_kernel() -> Callable[[np.ndarray, np.ndarray], float]:
    import numba

    @numba.njit(parallel=True)
    def total(values, columns):  # pragma: no cover - compiled
        acc = 0.0
        for i in numba.prange(values.size):
            acc += values[i] + columns[i]
        return acc

    return total


def _read_floor(data: np.ndarray, indices: np.ndarray) -> float:
    """One parallel pass over ``X.data`` and ``X.indices``: the least any pseudo-bulk reads."""
    return float(_read_floor_kernel()(data, indices))


def _pdex_top_genes(a: AnnData) -> dict[str, list[str]]:
    """pdex (the DE engine behind cell-eval): Wilcoxon against ``ctrl``; top 20 by p-value."""
    import pdex

    table = pdex.pdex(
        a, groupby="condition", mode="ref", reference="ctrl", is_log1p=True, as_pandas=True
    )
    table = table.sort_values(["target", "p_value"], kind="stable")
    return {
        str(group): [str(g) for g in rows["feature"].head(_N_TOP)]
        for group, rows in table.groupby("target", sort=False)
    }


def _write_result(result: Any, out: Path) -> None:
    if isinstance(result, pd.DataFrame):
        np.save(out.with_suffix(".npy"), result.to_numpy())
        out.with_suffix(".labels.json").write_text(
            json.dumps(
                {
                    "index": [str(i) for i in result.index],
                    "columns": [str(c) for c in result.columns],
                }
            )
        )
    else:
        out.with_suffix(".de.json").write_text(json.dumps(result))


def _worker(task: str, data: Path, out: Path, repeats: int = 1) -> None:
    """Entry point of a measurement process; writes ``out`` (JSON) and the result.

    Runs the task ``repeats`` times; reports the fastest time and the largest peak memory.
    """
    import warnings

    warnings.filterwarnings("ignore")
    fn = _task_fn(task)
    warm = make_benchmark_adata(600, 60, 8, seed=1)
    fn(warm)  # compile numba kernels, import lazily loaded modules
    del warm
    adata = load_dataset(data)
    gc.collect()
    seconds, peak = float("inf"), 0
    for _ in range(max(1, repeats)):
        result, t, p, how = _measure(lambda: fn(adata))
        seconds, peak = min(seconds, t), max(peak, p)
    _write_result(result, out)
    out.write_text(
        json.dumps(
            {
                "task": task,
                "seconds": seconds,
                "peak_bytes": peak,
                "memory_method": how,
                "repeats": max(1, repeats),
                "rss_loaded_bytes": _proc_status()["VmRSS"],
            }
        )
    )


@dataclass
class Measurement:
    """One worker's numbers."""

    task: str
    seconds: float
    peak_bytes: int
    memory_method: str
    out: Path


def _run_worker(
    task: str, data: Path, workdir: Path, repeats: int, label: str | None = None
) -> Measurement:
    out = workdir / f"{label or task}.json"
    print(f"  [{time.strftime('%H:%M:%S')}] {label or task} (x{repeats}) ...", flush=True)
    cmd = [sys.executable, "-m", "perturb_assets.benchmarks.dataset_layer"]
    cmd += ["--worker", task, "--data", str(data), "--out", str(out)]
    cmd += ["--repeats", str(repeats)]
    subprocess.run(cmd, check=True)
    info = json.loads(out.read_text())
    print(
        f"      {info['seconds']:.2f} s, peak +{info['peak_bytes'] / 2**20:.0f} MiB",
        flush=True,
    )
    return Measurement(task, info["seconds"], info["peak_bytes"], info["memory_method"], out)


def _load_frame(m: Measurement) -> pd.DataFrame:
    labels = json.loads(m.out.with_suffix(".labels.json").read_text())
    values = np.load(m.out.with_suffix(".npy"))
    return pd.DataFrame(values, index=labels["index"], columns=labels["columns"])


def _load_de(m: Measurement) -> dict[str, list[str]]:
    return json.loads(m.out.with_suffix(".de.json").read_text())


def _compare_de(mine: dict[str, list[str]], ref: dict[str, list[str]]) -> tuple[bool, str]:
    if set(mine) != set(ref):
        return False, f"condition sets differ ({len(mine)} vs {len(ref)})"
    bad = [g for g in ref if mine[g] != ref[g]]
    if bad:
        return False, f"{len(bad)} of {len(ref)} lists differ, e.g. {bad[0]!r}"
    return True, f"all {len(ref)} lists identical"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m perturb_assets.benchmarks.dataset_layer",
        description="Benchmark pseudobulk and DE-gene computation against pandas / scanpy.",
    )
    p.add_argument("--cells", type=int, default=None, help="cells (default 160,000)")
    p.add_argument("--genes", type=int, default=None, help="genes (default 5,000)")
    p.add_argument("--perturbations", type=int, default=None, help="conditions (default 1,100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="small smoke size: 20,000 x 2,000, 200 perts"
    )
    p.add_argument(
        "--wilcoxon-cells",
        type=int,
        default=None,
        help=(
            "stratified subsample on which both Wilcoxon implementations are compared "
            f"(default {_DEFAULT_WILCOXON_CELLS:,}; all cells with --quick; 0 skips Wilcoxon)"
        ),
    )
    p.add_argument(
        "--generator",
        choices=("auto", "simulate", "builtin"),
        default="auto",
        help="dataset source: the simulator if importable (auto), or the builtin generator",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per measurement, fastest time reported (Wilcoxon: always 1); default 3",
    )
    p.add_argument("--workdir", type=Path, default=None, help="folder for data and results")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1 when results are not identical)."""
    args = _parse(argv)
    if args.worker:
        _worker(args.worker, args.data, args.out, args.repeats)
        return 0

    size = dict(_QUICK if args.quick else _FULL)
    for key in size:
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    wilcoxon_cells = args.wilcoxon_cells
    if wilcoxon_cells is None:
        wilcoxon_cells = size["cells"] if args.quick else _DEFAULT_WILCOXON_CELLS

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="perturb_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, size, wilcoxon_cells, workdir)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class _Prepared:
    """The saved datasets and how to describe them."""

    full_dir: Path
    wilcoxon_dir: Path | None
    dataset_line: str
    wilcoxon_line: str


def _prepare(args: argparse.Namespace, size: dict[str, int], wilcoxon_cells: int, workdir: Path):
    """Build the dataset, save it (and the Wilcoxon subsample) for the worker processes."""
    print(
        f"[{time.strftime('%H:%M:%S')}] building dataset: {size['cells']:,} cells x "
        f"{size['genes']:,} genes, {size['perturbations']:,} perturbations (seed {args.seed})",
        flush=True,
    )
    t0 = time.perf_counter()
    adata, source = build_dataset(
        size["cells"], size["genes"], size["perturbations"], args.seed, args.generator
    )
    x = adata.X
    n_ctrl = int((adata.obs["condition"] == "ctrl").sum())
    n_cond = adata.obs["condition"].nunique()
    x_bytes = x.data.nbytes + x.indices.nbytes + x.indptr.nbytes
    density = x.nnz / (x.shape[0] * x.shape[1])
    dataset_line = (
        f"{x.shape[0]:,} cells x {x.shape[1]:,} genes, {n_cond - 1:,} perturbations + ctrl "
        f"({n_ctrl:,} control cells), CSR {x.dtype}, nnz {x.nnz:,} ({density:.1%}), "
        f"X {_mib(x_bytes)} MiB; source: {source}"
    )
    print(f"  {dataset_line} ({time.perf_counter() - t0:.0f} s)", flush=True)
    full_dir = workdir / "full"
    save_dataset(adata, full_dir)
    sub_dir, sub_line = None, ""
    if 0 < wilcoxon_cells < adata.n_obs:
        sub = stratified_subsample(adata, wilcoxon_cells, seed=args.seed)
        sub_dir = workdir / "wilcoxon"
        save_dataset(sub, sub_dir)
        n_sub_ctrl = int((sub.obs["condition"] == "ctrl").sum())
        sub_line = f"{sub.n_obs:,} cells (stratified subsample, {n_sub_ctrl:,} control)"
    elif wilcoxon_cells > 0:
        sub_dir, sub_line = full_dir, f"{adata.n_obs:,} cells (full dataset)"
    del adata, x
    gc.collect()
    return _Prepared(full_dir, sub_dir, dataset_line, sub_line)


def _measure_all(data: _Prepared, workdir: Path, repeats: int) -> dict[str, Measurement]:
    print(f"[{time.strftime('%H:%M:%S')}] measuring (one fresh process each)", flush=True)
    m: dict[str, Measurement] = {}
    full = ("pseudobulk", "pandas_groupby", "scanpy_aggregate", "decoupler_pseudobulk")
    for task in (*full, "read_floor", "ttest", "scanpy_ttest"):
        m[task] = _run_worker(task, data.full_dir, workdir, repeats)
    if data.wilcoxon_dir is not None:  # scanpy's Wilcoxon is slow: one run each
        m["wilcoxon"] = _run_worker("wilcoxon", data.wilcoxon_dir, workdir, 1)
        m["scanpy_wilcoxon"] = _run_worker("scanpy_wilcoxon", data.wilcoxon_dir, workdir, 1)
        m["pdex_wilcoxon"] = _run_worker("pdex_wilcoxon", data.wilcoxon_dir, workdir, 1)
        if data.wilcoxon_dir != data.full_dir:
            m["wilcoxon_full"] = _run_worker("wilcoxon", data.full_dir, workdir, 1, "wilcoxon_full")
    return m


def _compare_means(pb: pd.DataFrame, ref: pd.DataFrame) -> tuple[bool, str]:
    """Same conditions and genes (any row order) and ``allclose`` means."""
    if set(pb.index) != set(ref.index) or list(pb.columns) != list(ref.columns):
        return False, "conditions or genes differ"
    diff = np.abs(pb.to_numpy() - ref.loc[pb.index].to_numpy())
    return bool(
        (diff <= 1e-6 + 1e-5 * np.abs(pb.to_numpy())).all()
    ), f"max abs diff {diff.max():.1e}"


def _top_gene_overlap(mine: dict[str, list[str]], other: dict[str, list[str]]) -> str:
    """Mean share of our top-20 genes that ``other`` also lists, over shared conditions."""
    shared = [g for g in mine if g in other]
    overlap = np.mean([len(set(mine[g]) & set(other[g])) / len(mine[g]) for g in shared])
    return f"{overlap:.1%} of top-{_N_TOP} genes shared ({len(shared)} conditions)"


def _identical(m: dict[str, Measurement]) -> dict[str, tuple[bool, str]]:
    """Whether each of ours equals its reference, with a note."""
    pb = _load_frame(m["pseudobulk"])
    same = {
        name: _compare_means(pb, _load_frame(m[name]))
        for name in ("pandas_groupby", "scanpy_aggregate", "decoupler_pseudobulk")
    }
    same["ttest"] = _compare_de(_load_de(m["ttest"]), _load_de(m["scanpy_ttest"]))
    if "wilcoxon" in m:
        same["wilcoxon"] = _compare_de(_load_de(m["wilcoxon"]), _load_de(m["scanpy_wilcoxon"]))
        # pdex ranks by the tie-corrected p-value, scanpy (and ours) by |z|: not identical
        same["pdex_wilcoxon"] = (
            None,
            _top_gene_overlap(_load_de(m["wilcoxon"]), _load_de(m["pdex_wilcoxon"])),
        )
    return same


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.1f}x" if b > 0 else "n/a"


def _mem_ratio(mine: Measurement, other: Measurement) -> str:
    if mine.peak_bytes <= 0:
        return "n/a"
    return f"1/{other.peak_bytes / mine.peak_bytes:,.1f}"


def _verdict(cond: bool) -> str:
    return "met" if cond else "MISSED"


def _row(task: str, what: str, mine: Measurement, ref: Measurement, target: str, same) -> list:
    return [
        task,
        what,
        f"{mine.seconds:.2f} / {ref.seconds:.2f}",
        _ratio(ref.seconds, mine.seconds),
        f"{_mib(mine.peak_bytes)} / {_mib(ref.peak_bytes)}",
        _mem_ratio(mine, ref),
        target,
        {True: "yes", False: "NO", None: "n/a"}[same[0]] + f" ({same[1]})",
    ]


def _rows(m: dict[str, Measurement], same: dict, wilcoxon_line: str) -> list[list[str]]:
    return [*_pseudobulk_rows(m, same), *_de_rows(m, same, wilcoxon_line)]


def _pseudobulk_rows(m: dict[str, Measurement], same: dict) -> list[list[str]]:
    p, g = m["pseudobulk"], m["pandas_groupby"]
    pb_target = (
        f">=20x: {_verdict(g.seconds >= 20 * p.seconds)}; <=1/10: "
        f"{_verdict(p.peak_bytes * 10 <= g.peak_bytes)}"
    )
    floor = m["read_floor"]
    return [
        _row(
            "pseudobulk means",
            "`pseudobulk` vs `to_df().groupby().mean()`",
            p,
            g,
            pb_target,
            same["pandas_groupby"],
        ),
        _row(
            "pseudobulk means",
            "`pseudobulk` vs `sc.get.aggregate(func='mean')`",
            p,
            m["scanpy_aggregate"],
            "reported",
            same["scanpy_aggregate"],
        ),
        _row(
            "pseudobulk means",
            "`pseudobulk` vs decoupler `dc.pp.pseudobulk(mode='mean')`",
            p,
            m["decoupler_pseudobulk"],
            "reported",
            same["decoupler_pseudobulk"],
        ),
        [
            f"memory-read floor: one pass over X.data + X.indices ({floor.seconds:.3f} s)",
            "`pseudobulk` vs the floor",
            f"{p.seconds:.3f} / {floor.seconds:.3f}",
            f"{p.seconds / floor.seconds:.1f}x the floor",
            "-",
            "-",
            "-",
            "-",
        ],
    ]


def _de_rows(m: dict[str, Measurement], same: dict, wilcoxon_line: str) -> list[list[str]]:
    t, s = m["ttest"], m["scanpy_ttest"]
    de_vs = "`top_de_genes` vs `sc.tl.rank_genes_groups`"
    rows = [
        _row(
            f"DE t-test, top {_N_TOP}",
            de_vs,
            t,
            s,
            f">=5x: {_verdict(s.seconds >= 5 * t.seconds)}",
            same["ttest"],
        ),
    ]
    if "wilcoxon" in m:
        rows.append(
            _row(
                f"DE Wilcoxon, top {_N_TOP} ({wilcoxon_line})",
                de_vs,
                m["wilcoxon"],
                m["scanpy_wilcoxon"],
                "reported only",
                same["wilcoxon"],
            )
        )
        rows.append(
            _row(
                f"DE Wilcoxon ({wilcoxon_line})",
                "`top_de_genes` vs pdex (cell-eval's DE)",
                m["wilcoxon"],
                m["pdex_wilcoxon"],
                "reported only",
                same["pdex_wilcoxon"],
            )
        )
    if "wilcoxon_full" in m:
        wf = m["wilcoxon_full"]
        rows.append(
            [
                f"DE Wilcoxon, top {_N_TOP} (full dataset)",
                "`top_de_genes` only (scanpy too slow)",
                f"{wf.seconds:.2f} / -",
                "-",
                f"{_mib(wf.peak_bytes)} / -",
                "-",
                "-",
                "-",
            ]
        )
    return rows


_HEADER = [
    "Task",
    "Ours vs reference",
    "Time ours / ref (s)",
    "Speed-up",
    "Peak extra memory ours / ref (MiB)",
    "Memory ratio",
    "Target",
    "Identical",
]


def _print_table(rows: list[list[str]], m: dict[str, Measurement], data: _Prepared, repeats: int):
    import numba

    methods = sorted({mm.memory_method for mm in m.values()})
    print()
    print(f"Dataset: {data.dataset_line}.")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"numba threads {numba.get_num_threads()}; Python {platform.python_version()}."
    )
    print(
        f"Each number: a fresh process, a warm-up call on a tiny dataset, then the fastest of "
        f"{repeats} runs (Wilcoxon: 1 run); peak extra memory = largest "
        f"{'/'.join(methods)} during a call minus RSS before it."
    )
    print()
    print("| " + " | ".join(_HEADER) + " |")
    print("|" + "|".join("---" for _ in _HEADER) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def _run(args: argparse.Namespace, size: dict[str, int], wilcoxon_cells: int, workdir: Path) -> int:
    data = _prepare(args, size, wilcoxon_cells, workdir)
    m = _measure_all(data, workdir, args.repeats)
    same = _identical(m)
    _print_table(_rows(m, same, data.wilcoxon_line), m, data, args.repeats)
    if any(ok is False for ok, _ in same.values()):
        print("RESULTS DIFFER from the reference (see 'Identical').")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
