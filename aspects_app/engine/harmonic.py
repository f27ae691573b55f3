"""The ``"harmonic"`` score: compatibility as an inner product of per-chart feature vectors.

Harmonic astrology (Addey, Hamblin) reads an aspect as a harmonic of the circle: the h-th harmonic of a separation
Δ is cos(hΔ). The score of chart A against chart B is

    score(A, B) = s · Σ_h c_h Σ_{p,q} W_pq cos(h (λ_A,p − λ_B,q))

and since cos(h(a − b)) = cos ha cos hb + sin ha sin hb it is ``F(A) · G(B)`` with

    F(A)[t, h, p] = (cos hλ_A,p, sin hλ_A,p)[t]                    (side "a")
    G(B)[t, h, p] = s · c_h · Σ_q W_pq (cos hλ_B,q, sin hλ_B,q)[t]  (side "b")

vectors of length D = 2·H·P. Scores of a population are one matrix product and top-k is maximum-inner-product
search (:func:`select_top_k_pruned`). The scale ``s = 100 / (Σ_h |c_h| · Σ_pq |W_pq|)`` bounds scores to
[−100, 100]. Defaults (:class:`HarmonicConfig`): the coefficients follow the weighted score's aspect harmony
(:data:`~aspects_app.engine.scoring.ASPECT_HARMONY`), W_pq = w_p · w_q · e_pq with the weighted score's point
weights and an emphasis e on the classic cross pairs (:data:`CROSS_PAIR_EMPHASIS`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FieldError
from .scoring import DEFAULT_POINT_WEIGHT, POINT_WEIGHTS
from .topk import select_top_k
from .xp_ops import astype, concat, count_true, kth_smallest, numpy_like, reshape

HARMONIC = "harmonic"

# Harmonic -> coefficient: the aspect the harmonic stands for, weighted as the weighted score weighs it (positive
# harmonious, negative hard). 12 stands for the quincunx (its semi-sextile reading is the milder one).
DEFAULT_HARMONICS: dict[int, float] = {
    1: 0.6,  # conjunction
    2: -0.4,  # opposition
    3: 1.0,  # trine
    4: -0.6,  # square
    5: 0.4,  # quintile
    6: 0.8,  # sextile
    8: -0.3,  # semi-square, sesquiquadrate
    12: -0.2,  # quincunx
}
# Ordered (point of A, point of B) -> factor on w_p · w_q: the cross pairs synastry reads first, both directions.
CROSS_PAIR_EMPHASIS: dict[tuple[str, str], float] = {
    ("Sun", "Moon"): 2.0,
    ("Moon", "Sun"): 2.0,
    ("Venus", "Mars"): 2.0,
    ("Mars", "Venus"): 2.0,
    ("Sun", "Sun"): 1.5,
    ("Moon", "Moon"): 1.5,
    ("Sun", "Ascendant"): 1.5,
    ("Ascendant", "Sun"): 1.5,
    ("Moon", "Ascendant"): 1.5,
    ("Ascendant", "Moon"): 1.5,
}
DTYPES: tuple[str, ...] = ("float64", "float32")
SIDES: tuple[str, ...] = ("a", "b")
# Temporaries per chart pair of a harmonic top-k chunk beyond the score block: the pruning mask (bool), and the
# dense selection's when a block does not prune (see :func:`select_top_k_pruned`).
TOP_K_SELECTION_BYTES = 1 + 8 + 8 + 3
# Columns whose k-th best sets a row's pruning threshold, and the share of a row that may survive it before the
# dense selection is cheaper.
PROBE_COLUMNS = 16384
MAX_SURVIVOR_SHARE = 0.25
# Scores are rounded to multiples of GRID: BLAS sums in an order that depends on the block's shape (and differs
# between columns of one product), so identical charts would otherwise differ in the last bits and ties, and the
# order of near-equal scores, would depend on chunking. 2⁻³⁰ ≈ 9.3e-10 keeps the error below 1e-9 on the
# [−100, 100] scale; multiplying by powers of two is exact, so a rounded score is exactly n · GRID.
GRID_SCALE = 2.0**30


@dataclass(frozen=True)
class HarmonicConfig:
    """The harmonic score's settings: ``harmonics`` {h: c_h} (h a positive integer), ``point_weights`` {name: w}
    (others weigh :data:`~aspects_app.engine.scoring.DEFAULT_POINT_WEIGHT`), ``pair_emphasis`` {(p, q): e} on ordered
    pairs (W is symmetric when the emphasis is), and ``dtype`` "float64" or "float32" (features and products; the
    float32 error is documented in docs/harmonic.md)."""

    harmonics: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_HARMONICS))
    point_weights: Mapping[str, float] = field(default_factory=lambda: dict(POINT_WEIGHTS))
    pair_emphasis: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(CROSS_PAIR_EMPHASIS))
    dtype: str = "float64"

    def __post_init__(self) -> None:
        self._check_harmonics()
        for name, w in self.point_weights.items():
            if not np.isfinite(w) or w < 0:
                raise FieldError("point_weights", f"weight of {name!r} must be finite and >= 0, got {w!r}")
        for pair, e in self.pair_emphasis.items():
            if not (isinstance(pair, tuple) and len(pair) == 2) or not np.isfinite(e) or e < 0:
                raise FieldError("pair_emphasis", f"expected (point, point): factor >= 0, got {pair!r}: {e!r}")
        if self.dtype not in DTYPES:
            raise FieldError("dtype", f"expected one of {', '.join(DTYPES)}, got {self.dtype!r}")

    def _check_harmonics(self) -> None:
        if not self.harmonics:
            raise FieldError("harmonics", "at least one harmonic is required")
        for h, c in self.harmonics.items():
            if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
                raise FieldError("harmonics", f"harmonics must be positive integers, got {h!r}")
            if not np.isfinite(c):
                raise FieldError("harmonics", f"coefficient of harmonic {h} must be finite, got {c!r}")
        if not any(c for c in self.harmonics.values()):
            raise FieldError("harmonics", "at least one coefficient must be nonzero")

    def config_hash(self, points: Sequence[str]) -> str:
        """A stable digest of the configuration and the columns ``points``: what G features (and so a match index
        or stored features) were computed for."""
        text = json.dumps(
            {
                "harmonics": sorted((int(h), float(c)) for h, c in self.harmonics.items()),
                "point_weights": sorted((str(n), float(w)) for n, w in self.point_weights.items()),
                "pair_emphasis": sorted((str(p), str(q), float(e)) for (p, q), e in self.pair_emphasis.items()),
                "dtype": self.dtype,
                "points": list(points),
            },
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pair_weights(self, names: Sequence[str]) -> npt.NDArray[np.float64]:
        """W (P, P) for the columns ``names``: w_p · w_q · e_pq."""
        weight = np.array([self.point_weights.get(n, DEFAULT_POINT_WEIGHT) for n in names], dtype=np.float64)
        emphasis = np.array([[self.pair_emphasis.get((p, q), 1.0) for q in names] for p in names], dtype=np.float64)
        return np.outer(weight, weight) * emphasis.reshape(len(names), len(names))


class HarmonicScorer:
    """F and G features of one configuration for one set of columns, on a namespace."""

    def __init__(self, xp: Any, names: Sequence[str], config: HarmonicConfig) -> None:
        used = sorted((h, c) for h, c in config.harmonics.items() if c)  # a zero coefficient adds nothing
        self.xp = xp
        self.np_dtype = np.dtype(config.dtype)
        self.harmonics = np.array([h for h, _ in used], dtype=np.float64)
        coefficients = np.array([c for _, c in used], dtype=np.float64)
        weights = config.pair_weights(names)
        total = float(np.abs(coefficients).sum() * np.abs(weights).sum())
        if total == 0.0:
            raise FieldError("point_weights", f"every pair weight of the columns {list(names)} is zero")
        self.scale = 100.0 / total
        if not np.isfinite(self.scale):
            raise FieldError("harmonics", f"coefficients and weights too small to scale to 100 (sum {total!r})")
        self.xp_harmonics = xp.asarray(self.harmonics)
        # G's mixing per (h): s · c_h · W, applied as features @ W.T on the points axis.
        self.xp_weights_t = xp.asarray(np.ascontiguousarray(weights.T))
        self.xp_coefficients = xp.asarray(coefficients * self.scale)
        self.dimension = 2 * len(used) * len(names)

    def features(self, lon: Any, side: str) -> Any:
        """(N, D) features of the longitudes ``lon`` (N, P) in degrees, on the namespace, in the configured dtype."""
        xp = self.xp
        if side not in SIDES:
            raise FieldError("side", f"expected 'a' or 'b', got {side!r}")
        n, p = lon.shape
        # h·λ reduced modulo 360 before the radians, so that large harmonics keep the angle's precision.
        angle = (self.xp_harmonics[None, :, None] * lon[:, None, :]) % 360.0 * (np.pi / 180.0)
        trig = xp.stack([xp.cos(angle), xp.sin(angle)], axis=1)  # (N, 2, H, P)
        if side == "b":  # one (N·2·H, P) @ (P, P) product mixes the points
            mixed = xp.matmul(reshape(xp, trig, (n * 2 * self.harmonics.shape[0], p)), self.xp_weights_t)
            trig = reshape(xp, mixed, trig.shape) * self.xp_coefficients[None, None, :, None]
        return astype(xp, reshape(xp, trig, (n, self.dimension)), self.np_dtype)


def products_into(xp: Any, fa: Any, fb: Any, out: Any) -> None:
    """``out[...] = fa @ fb.T``, not yet rounded: one BLAS product (cuBLAS on CuPy), in place where it can."""
    if numpy_like(xp):
        xp.matmul(fa, fb.T, out=out)
    else:
        out[...] = xp.matmul(fa, xp.matrix_transpose(fb))


def round_to_grid(xp: Any, x: Any) -> Any:
    """``x`` clipped to [−100, 100] (summation can overshoot by an ulp) and rounded to multiples of 1/GRID_SCALE,
    in place on NumPy and CuPy (returned as well)."""
    if numpy_like(xp):
        xp.clip(x, -100.0, 100.0, out=x)
        xp.multiply(x, GRID_SCALE, out=x)
        xp.rint(x, out=x)
        xp.multiply(x, 1.0 / GRID_SCALE, out=x)
        return x
    x[...] = xp.round(xp.clip(x, -100.0, 100.0) * GRID_SCALE) * (1.0 / GRID_SCALE)
    return x


def scores_into(xp: Any, fa: Any, fb: Any, out: Any) -> None:
    """``out[...]`` = the scores ``fa @ fb.T``, clipped and rounded to the grid."""
    products_into(xp, fa, fb, out)
    round_to_grid(xp, out)


def select_top_k_pruned(xp: Any, products: Any, k: int) -> tuple[Any, Any]:
    """The k best rounded scores of each row of the unrounded ``products`` (overwritten), as
    :func:`~aspects_app.engine.topk.select_top_k` orders them (ties to the lower column), with a threshold first:
    the k-th best of a row's first :data:`PROBE_COLUMNS` columns bounds its final k-th from below, so only the few
    entries at or above it are rounded and selected among. NumPy and CuPy compact them with integer scatter; other
    namespaces, and rows where too many survive (adversarial orders), round everything and take the dense selection."""
    rows, cols = products.shape
    probe = min(cols, max(PROBE_COLUMNS, 4 * k))
    if not numpy_like(xp) or probe >= cols or rows == 0:
        return select_top_k(xp, round_to_grid(xp, products), k)
    threshold = kth_smallest(xp, round_to_grid(xp, products[:, :probe]), probe - k)  # (rows, 1), rounded
    # Every product that rounds to the threshold or above: half a grid step below it (the probe, rounded in
    # place, passes as it is).
    keep = products >= threshold - 0.5 / GRID_SCALE
    scores = products
    counts = count_true(xp, keep, axis=1)[:, 0]
    width = int(counts.max())
    if width > MAX_SURVIVOR_SHARE * cols:
        return select_top_k(xp, round_to_grid(xp, scores), k)
    # Flat indices (a 1-D scan, far faster than a 2-D nonzero in NumPy), row-major: columns ascend within a row.
    flat = xp.flatnonzero(keep)
    row_index, col_index = flat // cols, flat % cols
    starts = xp.cumsum(counts) - counts
    slot = xp.arange(row_index.shape[0]) - starts[row_index]
    # Padding scores -inf, below every survivor (each row has at least k survivors, the probe's best k).
    packed = xp.full((rows, width), -xp.inf, dtype=scores.dtype)
    packed_cols = xp.zeros((rows, width), dtype=np.int64)
    packed[row_index, slot] = round_to_grid(xp, scores[row_index, col_index])
    packed_cols[row_index, slot] = col_index
    position, values = select_top_k(xp, packed, k)  # ascending slot is ascending column: ties stay with the lower
    return xp.take_along_axis(packed_cols, position, axis=1), values


def features_of(xp: Any, scorer: HarmonicScorer, lon: Any, side: str, rows: int) -> Any:
    """Features of ``lon`` computed in row blocks of at most ``rows`` (their trig temporaries stay bounded)."""
    n = lon.shape[0]
    if n <= rows:
        return scorer.features(lon, side)
    return concat(xp, [scorer.features(lon[r : min(r + rows, n), :], side) for r in range(0, n, rows)], axis=0)


@dataclass(frozen=True)
class FoldIn:
    """Charts whose stored top-k list a new chart enters: their ``rows`` (ascending) and its ``scores`` there."""

    rows: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


def fold_in(features_a: Any, feature_b: Any, new_id: int, kth_scores: Any, kth_ids: Any, self_row: int = -1) -> FoldIn:
    """Which stored lists a new (or moved) chart enters, from one matrix-vector product over the population.

    ``features_a`` (N, D) are the population's F features, ``feature_b`` (D,) the new chart's G features, so
    ``features_a @ feature_b`` scores the new chart as a partner of every chart. ``kth_scores`` and ``kth_ids``
    (N,) are each chart's current k-th (worst kept) score and partner id (−inf where a list holds fewer than k).
    The chart enters a list where it beats the k-th by the top-k order: a higher score, or an equal one and a
    lower id than the k-th's. ``self_row`` (−1: none) is the new chart's own row, never its own partner. Scores are
    rounded to the grid as ``scores(..., method="harmonic")`` rounds them, so they compare with stored ones."""
    fa = np.asarray(features_a)
    fb = np.asarray(feature_b)
    if fa.ndim != 2 or not np.issubdtype(fa.dtype, np.floating):
        raise FieldError("features_a", f"expected a 2-D float (charts, dimension) array, got {fa.shape} {fa.dtype}")
    if fb.shape != (fa.shape[1],) or not np.issubdtype(fb.dtype, np.floating):
        raise FieldError("feature_b", f"expected a float vector of length {fa.shape[1]}, got shape {fb.shape}")
    if not np.isfinite(fb).all():
        raise FieldError("feature_b", "features must be finite (no NaN or infinity)")
    kth = np.asarray(kth_scores, dtype=np.float64)
    ids = np.asarray(kth_ids)
    if kth.shape != (fa.shape[0],) or np.isnan(kth).any():
        raise FieldError("kth_scores", f"expected {fa.shape[0]} scores (one per chart, no NaN), got {kth.shape}")
    if ids.shape != (fa.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
        raise FieldError("kth_ids", f"expected {fa.shape[0]} integer ids (one per chart), got {ids.shape}")
    if not -1 <= self_row < fa.shape[0]:
        raise FieldError("self_row", f"must be -1 or a row of features_a (0..{fa.shape[0] - 1}), got {self_row}")
    scores = round_to_grid(np, np.matmul(fa, fb.astype(fa.dtype, copy=False)).astype(np.float64, copy=False))
    enters = (scores > kth) | ((scores == kth) & (new_id < ids))
    if self_row >= 0:
        enters[self_row] = False
    rows = np.flatnonzero(enters).astype(np.int64)
    return FoldIn(rows, scores[rows])
