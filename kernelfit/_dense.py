"""Solve from the patch matrix: least squares, pseudoinverse and ridge by one SVD per system.

The methods differ only in the filter factors they apply to the singular values, so every
diagnostic is computed alike. The patch rows are built in one pass over the fitted samples.
"""

# scipy.linalg and scipy.optimize are imported where they are used: `import kernelfit` stays
# fast.

import dataclasses

import numpy as np

from ._solve import (
    EstimateBuilder,
    Moments,
    joint_covariance,
    log_grid_minimum,
    system_indices,
)
from ._statistics import design_tiles

# A dense system larger than this (the patch matrix alone) is refused: the SVD needs as
# much again, and the normal equations are the right tool for such sizes.
DENSE_LIMIT_BYTES = 2 * 2**30


@dataclasses.dataclass
class System:
    """A dense least-squares system ``A X = B`` and where its solution goes."""

    A: np.ndarray
    B: np.ndarray
    groups: object
    n_groups: int
    coef_index: np.ndarray
    bias_index: np.ndarray
    where: tuple = ()   # the rows' places: a (B, *V) mask per tile, in the rows' order
    weights: object = None  # None, or each row's weight (n,)
    origins: tuple = ()  # per entry of `where`: its slots' first samples (or None)


def _row_bound(problem, design):
    """Rows of the largest system, counting every sample of the fitted boxes."""
    samples = sum(box.size for box in design.boxes)
    return samples * (problem.n_in if problem.layout == "shared" else 1)


def dense_bytes(problem, design):
    """Bytes of the largest patch matrix the dense solvers would build (at most)."""
    m = design.support.size * (problem.n_in if problem.layout == "full" else 1)
    return _row_bound(problem, design) * m * np.dtype(problem.dtype).itemsize


def solve_lstsq(problem, design, first=None):
    """Minimum-norm least squares, by SVD, with the usual rank tolerance ``max(n, m) eps``."""
    return _solve(problem, design, first, lambda s, tol, beta, b2, n, g: _truncated(s, tol),
                  method="lstsq-dense")


def solve_pinv(problem, design, first=None, *, rcond=None):
    """Explicit pseudoinverse: singular values below ``rcond * s_max`` are discarded."""
    def factors(s, tol, beta, b2, n, g):
        cutoff = tol if rcond is None else rcond * (s[0] if s.size else 0.0)
        return _truncated(s, cutoff)
    return _solve(problem, design, first, factors, explicit=True, method="pinv")


def solve_ridge(problem, design, first=None, *, reg):
    """Tikhonov regularisation ``min |A x - b|^2 + reg |x|^2``; reg='gcv' chooses it."""
    chosen = []

    def factors(s, tol, beta, b2, n, g):
        lam = _gcv(s, beta, b2, n, g) if reg == "gcv" else float(reg)
        chosen.append(lam)
        if lam == 0:
            return _truncated(s, tol)
        return s / (s ** 2 + lam)

    estimate = _solve(problem, design, first, factors, method="ridge")
    # One parameter per system: several only when GCV chose them per channel.
    return dataclasses.replace(estimate, reg=chosen[0] if len(set(chosen)) == 1
                               else np.array(chosen))


def _truncated(s, cutoff):
    safe = np.where(s > cutoff, s, 1.0)
    return np.where(s > cutoff, 1.0 / safe, 0.0)


def _gcv(s, beta, b2, n, g):
    """The Tikhonov parameter that minimises generalised cross-validation.

    `beta` is ``U^H b`` and `b2` is ``|b|^2``; the part of b outside U's span is residual
    at every parameter.
    """
    if not s.size or s[0] == 0:
        return 0.0
    power = np.sum(np.abs(beta) ** 2, axis=1)  # per singular value, over right-hand sides
    outside = max(b2 - float(power.sum()), 0.0)
    s2 = s ** 2

    def score(log_lam):
        lam = 10.0 ** log_lam
        shrink = lam / (s2 + lam)
        rss = np.sum(shrink ** 2 * power) + outside
        dof = n - np.sum(s2 / (s2 + lam)) - g
        return np.inf if dof <= 0 else n * rss / dof ** 2

    top = np.log10(s2[0])
    return log_grid_minimum(score, top - 14, top + 1, 151)


def _svd(A):
    import scipy.linalg

    try:
        return scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd")
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd")


def systems(problem, design, first=None):
    """The dense systems of a design, built from its tiles (in memory, or read once).

    'shared': one system whose rows are every channel's samples (a bias group per channel);
    'separate': one per channel; 'full': one with a column per output channel when they
    share their samples, else one per output channel.
    """
    support = design.support
    ndim = len(support.shape)
    m = support.size * (problem.n_in if problem.layout == "full" else 1)
    if problem.layout == "shared":
        plans = [([c], [c], c, c) for c in range(problem.n_in)]  # channel, target, rows, group
        count = 1
    elif problem.layout == "separate":
        plans = [([c], [c], c, 0) for c in range(problem.n_out)]
        count = problem.n_out
    elif problem.joint:
        plans = [(slice(None), list(range(problem.n_out)), 0, 0)]
        count = 1
    else:
        plans = [(slice(None), [j], j, 0) for j in range(problem.n_out)]
        count = problem.n_out
    parts = [([], [], [], [], [], []) for _ in range(count)]
    for tile in design_tiles(problem, first, design):
        windows = tile.windows(problem)  # (B, *V, C_in, *K): taps last
        windows = np.moveaxis(windows, ndim + 1, -1)  # (B, *V, *K, C_in)
        lead = (slice(None),) * (ndim + 1)
        windows = windows[lead + _within_taps(support, tile.support)]
        for index, (channel, targets, rows_of, group) in enumerate(plans):
            system = 0 if problem.layout == "shared" else index
            kept = tile.usable[..., rows_of]
            W = windows[kept][..., channel]
            parts[system][0].append(W.reshape(W.shape[0], m))
            parts[system][1].append(tile.target[kept][:, targets])
            parts[system][2].append(np.full(W.shape[0], group))
            parts[system][3].append(kept)
            if tile.weight is not None:
                parts[system][4].append(tile.weight[..., rows_of][kept])
            parts[system][5].append(tile.origins)
    out = []
    for s, (rows, targets, groups, where, weights, origins) in enumerate(parts):
        coef_index, bias_index = system_indices(problem.layout, problem.joint, support.shape,
                                                problem.n_in, problem.n_out, s)
        A = np.concatenate(rows).astype(problem.dtype, copy=False)
        B = np.concatenate(targets).astype(problem.dtype, copy=False)
        n_groups = problem.n_in if problem.layout == "shared" else 1
        out.append(System(A, B, np.concatenate(groups) if problem.bias else None,
                          n_groups if problem.bias else 0, coef_index, bias_index,
                          tuple(where), np.concatenate(weights) if weights else None,
                          tuple(origins)))
    return out


def _add_moments(moments, system, residual, predicted, raw):
    """The residual's moments (`raw`: before the weights), tile by tile in its spatial
    layout (the rows put back in their places), so that its structure along the image is
    seen too."""
    if not system.where:
        moments.add(predicted.ravel(), residual.ravel(), raw=raw.ravel())
        return
    start = 0
    for kept, origins in zip(system.where, system.origins):
        count = int(np.count_nonzero(kept))
        shape = kept.shape + residual.shape[1:]
        grids = []
        for values in (predicted, residual, raw):
            grid = np.zeros(shape, residual.dtype)
            grid[kept] = values[start:start + count]
            grids.append(grid)
        used = None if kept.all() else np.broadcast_to(kept[..., np.newaxis], shape)
        moments.add(grids[0], grids[1], used, raw=grids[2], origins=origins)
        start += count


def _within_taps(support, outer):
    return tuple(slice(a - b, a - b + k) for a, b, k in zip(support.lo, outer.lo,
                                                           support.shape))


def _solve(problem, design, first, filter_factors, *, explicit=False, method):
    """Solve every system of the design by SVD with the given filter factors f(s).

    ``X = V diag(f) U^H B``; the covariance of X is ``sigma^2 V diag(|f|^2) V^H``. A bias
    is fitted exactly and unpenalised by centring each bias group (Frisch-Waugh-Lovell).
    Weighted rows: the groups are centred on their weighted means, then every row is
    scaled by the square root of its weight.
    """
    from ._normal import standardised

    needed = dense_bytes(problem, design)
    if needed > DENSE_LIMIT_BYTES:
        m = design.support.size * (problem.n_in if problem.layout == "full" else 1)
        raise ValueError(
            f"the dense patch matrix would take {needed / 2**30:.1f} GiB "
            f"({_row_bound(problem, design)} equations x {m} unknowns; limit "
            f"{DENSE_LIMIT_BYTES / 2**30:.0f} GiB); method='lstsq' solves it exactly from "
            f"the normal equations instead")
    builder = EstimateBuilder(problem.kernel_shape(design.support.shape),
                              (problem.n_in,) if problem.layout == "shared"
                              else (problem.n_out,), problem.bias, problem.dtype)
    all_systems = systems(problem, design, first)
    samples = np.concatenate([s.B.ravel() for s in all_systems])
    centre = float(np.real(samples.mean())) if samples.size else 0.0
    moments = Moments(centre, float(np.std(samples)) if samples.size else 1.0)
    moments.threshold = problem.outlier_threshold
    for system in all_systems:
        A, B = system.A, system.B
        n, m = A.shape
        r = B.shape[1]
        w = np.ones(n) if system.weights is None else system.weights
        ss_tot = (w @ np.abs(B - (w @ B) / w.sum()) ** 2) if n else np.zeros(r)
        groups = system.groups
        n_groups = system.n_groups
        if groups is not None:
            counts = np.bincount(groups, minlength=n_groups)
            totals = np.bincount(groups, weights=w, minlength=n_groups)  # (the counts)
            mean_A = np.zeros((n_groups, m), dtype=A.dtype)
            mean_B = np.zeros((n_groups, r), dtype=B.dtype)
            for g in np.flatnonzero(counts):
                rows = groups == g
                mean_A[g] = (w[rows] @ A[rows]) / totals[g]
                mean_B[g] = (w[rows] @ B[rows]) / totals[g]
            # In place: the patch matrix is this solver's own copy of the used windows.
            nonempty = np.flatnonzero(counts)
            if nonempty.size == 1:
                A -= mean_A[nonempty[0]]
            else:
                for g in nonempty:
                    A[groups == g] -= mean_A[g]
            B = B - mean_B[groups]
        if system.weights is not None:
            root = np.sqrt(w)[:, np.newaxis]
            A *= root
            B = B * root
        U, s, Vh = _svd(A)
        tol = max(n, m) * np.finfo(s.dtype).eps * (s[0] if s.size else 0.0)
        rank = int(np.sum(s > tol))
        beta = U.conj().T @ B
        f = filter_factors(s, tol, beta, float(np.sum(np.abs(B) ** 2)), n, n_groups)
        if explicit:  # the pseudoinverse as a matrix, as the classic answer forms it
            X = ((Vh.conj().T * f) @ U.conj().T) @ B
        else:
            X = Vh.conj().T @ (f[:, None] * beta)
        residual = B - A @ X
        ss_res = np.sum(np.abs(residual) ** 2, axis=0)
        # Degrees of freedom: samples less the trace of the hat matrix (sum of f s) and the
        # bias groups that have samples.
        n_bias = int(np.count_nonzero(counts)) if groups is not None else 0
        dof = n - float(np.sum(np.real(f * s))) - n_bias
        sigma2 = (np.ones(r) if problem.absolute else  # (a noise model's variances)
                  ss_res / dof if dof > 0 else np.full(r, np.nan))
        in_row_space = np.sum(np.abs(Vh[:rank]) ** 2, axis=0) > 1 - 1e-6
        variance = (np.abs(Vh.conj().T) ** 2) @ (np.abs(f) ** 2)
        coef_stderr = np.sqrt(np.outer(variance, sigma2))
        coef_stderr[~in_row_space] = np.nan
        b, b_stderr, bias_rank = None, None, 0
        if groups is not None:
            projected = Vh.conj() @ mean_A.T  # (k, G): each group mean in the V basis
            captured = np.sum(np.abs(projected[:rank]) ** 2, axis=0)
            estimable = (captured >= (1 - 1e-6) * np.sum(np.abs(mean_A) ** 2, axis=1)) & (
                counts > 0)
            b = np.where(counts[:, None] > 0, mean_B - mean_A @ X, np.nan)
            b_var = (1.0 / np.where(counts > 0, totals, 1.0))[:, None] + (
                np.abs(projected.T) ** 2 @ (np.abs(f) ** 2))[:, None]
            b_stderr = np.sqrt(b_var * sigma2[None, :])
            b_stderr[~estimable] = np.nan
            bias_rank = int(np.count_nonzero(estimable))
        # the checks see the residual scaled by sqrt(w) (one variance), against the level
        unscaled = residual if system.weights is None else residual / root
        _add_moments(moments, system, residual, system.B - unscaled,
                     standardised(problem, unscaled, system.B - unscaled))
        if builder.wants_covariance:  # V diag(|f|^2) V^H, and the bias's from it
            kernel = (Vh.conj().T * np.abs(f) ** 2) @ Vh
            unscaled = kernel if groups is None else joint_covariance(
                kernel, mean_A, np.where(counts > 0, 1.0 / np.where(counts > 0, totals, 1.0),
                                         0.0), counts > 0)
            for j in range(r):
                builder.add_covariance(system.coef_index[:, j], None if groups is None else
                                       system.bias_index[:, j], sigma2[j] * unscaled)
        builder.add(system.coef_index, X, coef_stderr, system.bias_index, b, b_stderr,
                    ss_res=float(ss_res.sum()), ss_tot=float(ss_tot.sum()),
                    n_equations=n * r, n_unknowns=(m + n_groups) * r,
                    rank=(rank + bias_rank) * r, extremes=s[[0, -1]] if s.size else s,
                    full_rank=s.size == m and rank == m)
    return builder.estimate(method, moments=moments)
