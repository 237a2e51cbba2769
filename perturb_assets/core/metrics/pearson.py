"""Row-wise Pearson correlations, the kernel under every Pearson metric of the benchmark.

:func:`rowwise_pearson` is the public form; ``_pearson_and_delta`` scores the Pearson and the
Pearson Delta of every condition in one numba pass (serial below ``_PARALLEL_MIN_ENTRIES``,
threaded above), which :func:`perturb_assets.core.metrics.perturbation_metrics` calls.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "rowwise_pearson",
]

_EPS = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------------------------
# Row-wise Pearson correlation
# --------------------------------------------------------------------------------------------


def rowwise_pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of every row of ``x`` with the same row of ``y``.

    Vectorised equivalent of ``[scipy.stats.pearsonr(x[i], y[i])[0] for i in range(n)]``:
    the rows are centred, and ``r = <xc, yc> / (|xc| |yc|)``, clipped to ``[-1, 1]``.

    Parameters
    ----------
    x, y
        Arrays of shape ``(n, m)``.
    mask
        Optional boolean ``(n, m)`` array: only entries where it is True are used (row ``i`` is
        ``pearsonr(x[i, mask[i]], y[i, mask[i]])``).

    Returns
    -------
    numpy.ndarray
        ``float64`` array of length ``n``. NaN where the correlation is undefined, exactly where
        ``pearsonr`` gives NaN or fails: a row (of ``x`` or ``y``) whose used values are all
        equal, a row with fewer than two used values, or NaN among the used values.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be 2-D of the same shape; got {x.shape} and {y.shape}")
    n, m = x.shape
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise ValueError(f"mask has shape {mask.shape}; expected {x.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if mask is None:
            count = np.full(n, m)
            xc = x - x.mean(axis=1, keepdims=True)
            yc = y - y.mean(axis=1, keepdims=True)
        else:
            count = mask.sum(axis=1)
            xc = np.where(mask, x, 0.0)
            yc = np.where(mask, y, 0.0)
            xc -= (xc.sum(axis=1) / count)[:, None]
            yc -= (yc.sum(axis=1) / count)[:, None]
            xc[~mask] = 0.0
            yc[~mask] = 0.0
        sxx = np.vecdot(xc, xc)
        syy = np.vecdot(yc, yc)
        r = np.vecdot(xc, yc) / (np.sqrt(sxx) * np.sqrt(syy))
    r = np.clip(r, -1.0, 1.0)
    r[_constant_rows(x, mask, sxx) | _constant_rows(y, mask, syy) | (count < 2)] = np.nan
    return r


def _constant_rows(a: np.ndarray, mask: np.ndarray | None, centred_ss: np.ndarray) -> np.ndarray:
    """Rows whose (used) values are all exactly equal, as ``pearsonr`` tests it.

    An exactly constant row centres to values of at most ``m * eps * |value|`` (whatever the
    summation order), so only rows with a centred sum of squares that small are checked.
    """
    n, m = a.shape
    out = np.zeros(n, dtype=bool)
    if n == 0 or m == 0:
        return out
    rows = np.arange(n)
    first = np.zeros(n, dtype=np.int64) if mask is None else mask.argmax(axis=1)
    level = a[rows, first]
    with np.errstate(invalid="ignore", over="ignore"):
        maybe = ~(centred_ss > 4.0 * m * (m * _EPS * level) ** 2)  # NaN counts as "maybe"
    cand = np.flatnonzero(maybe)
    if cand.size:
        equal = a[cand] == level[cand, None]
        if mask is not None:
            equal |= ~mask[cand]
        out[cand] = equal.all(axis=1)
    return out


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_pearson_and_delta(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, i: int, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    """``out[i] = (pearson, pearson_delta)`` of row ``i``; ``zero[i]``: truth row all zero.

    Two passes: means, then centred sums of squares and products (``x - mean``, as
    ``pearsonr``). Rows that may be constant (centred sum of squares at rounding level) are
    checked exactly, as :func:`_constant_rows`.
    """
    g = pred.shape[1]
    eps = 2.220446049250313e-16
    sp = 0.0
    st = 0.0
    sdp = 0.0
    sdt = 0.0
    for j in range(g):
        p = pred[i, j]
        t = truth[i, j]
        c = ctrl[j]
        sp += p
        st += t
        sdp += p - c
        sdt += t - c
    mp = sp / g
    mt = st / g
    mdp = sdp / g
    mdt = sdt / g
    spp = 0.0
    stt = 0.0
    spt = 0.0
    sdpp = 0.0
    sdtt = 0.0
    sdpt = 0.0
    for j in range(g):
        p = pred[i, j]
        t = truth[i, j]
        c = ctrl[j]
        a = p - mp
        b = t - mt
        u = (p - c) - mdp
        v = (t - c) - mdt
        spp += a * a
        stt += b * b
        spt += a * b
        sdpp += u * u
        sdtt += v * v
        sdpt += u * v
    r = spt / (np.sqrt(spp) * np.sqrt(stt))
    rd = sdpt / (np.sqrt(sdpp) * np.sqrt(sdtt))
    # clip to [-1, 1] as pearsonr does; comparisons keep NaN (no min/max on NaN)
    if r > 1.0:
        r = 1.0
    elif r < -1.0:
        r = -1.0
    if rd > 1.0:
        rd = 1.0
    elif rd < -1.0:
        rd = -1.0
    bound = 4.0 * g * (g * eps) ** 2
    const_p = False
    const_t = False
    const_dp = False
    const_dt = False
    if not spp > bound * pred[i, 0] ** 2:
        const_p = True
        for j in range(g):
            if pred[i, j] != pred[i, 0]:
                const_p = False
                break
    if not stt > bound * truth[i, 0] ** 2:
        const_t = True
        for j in range(g):
            if truth[i, j] != truth[i, 0]:
                const_t = False
                break
    d0 = pred[i, 0] - ctrl[0]
    if not sdpp > bound * d0**2:
        const_dp = True
        for j in range(g):
            if pred[i, j] - ctrl[j] != d0:
                const_dp = False
                break
    d0 = truth[i, 0] - ctrl[0]
    if not sdtt > bound * d0**2:
        const_dt = True
        for j in range(g):
            if truth[i, j] - ctrl[j] != d0:
                const_dt = False
                break
    if const_p or const_t:
        r = np.nan
    if const_dp or const_dt:
        rd = np.nan
    out[i, 0] = r
    out[i, 1] = rd
    zero[i] = const_t and truth[i, 0] == 0.0


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _pearson_and_delta_serial(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    for i in range(pred.shape[0]):
        _row_pearson_and_delta(pred, truth, ctrl, i, out, zero)


@numba.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _pearson_and_delta_parallel(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, out: np.ndarray, zero: np.ndarray
) -> None:  # pragma: no cover - numba
    for i in numba.prange(pred.shape[0]):
        _row_pearson_and_delta(pred, truth, ctrl, i, out, zero)


#: Matrices with fewer entries than this use the serial kernel (thread start-up costs more).
_PARALLEL_MIN_ENTRIES = 1 << 22


def _pearson_and_delta(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(pearson, pearson_delta)`` and the all-zero-truth flag (float64 C arrays)."""
    n, g = truth.shape
    out = np.full((n, 2), np.nan)
    zero = np.zeros(n, dtype=bool)
    if n == 0:
        return out, zero
    if g < 2:  # pearsonr needs two values
        zero[:] = (truth == 0.0).all(axis=1)
        return out, zero
    if n * g >= _PARALLEL_MIN_ENTRIES and numba.get_num_threads() > 1:
        _pearson_and_delta_parallel(pred, truth, ctrl, out, zero)
    else:
        _pearson_and_delta_serial(pred, truth, ctrl, out, zero)
    return out, zero
