"""A smoothness prior: least squares with a penalty on the kernel's Laplacian, its weight
chosen by generalised cross-validation.

``prior={'laplacian': w}`` minimises ``|A k + b - y|^2 + w |L k|^2``, with L the discrete
Laplacian of the kernel's grid (zero beyond its support, so the penalty also asks the kernel
to fall to zero at its edges, as a PSF does), per input channel. With ``'gcv'`` the weight
minimises ``n RSS(w) / (n - tr H(w))^2``: the generalised eigenproblem ``C v = t Q v`` of
the centred Gram matrix C and ``Q = L^T L`` (definite: the Laplacian with zero beyond the
support is invertible) gives every weight's solution, hat-matrix trace and residual at once
(``(C + w Q)^-1 = V diag(1 / (t + w)) V^T``). The standard errors are those of the
regularised estimator, ``sigma^2 (C + w Q)^-1 C (C + w Q)^-1``, with sigma^2 the residual
over ``n - tr H`` degrees of freedom; the bias it trades for them is not in them.
"""

import numbers

import numpy as np

from ._solve import EstimateBuilder, Factorization, log_grid_minimum
from ._validation import shown

__all__ = ["check_prior", "solve_prior"]

PRIORS = ("laplacian",)
CHOICES = ("gcv",)


def check_prior(prior, method, constraints):
    """`prior` checked: None, or {'laplacian': weight >= 0 or 'gcv'}."""
    if prior is None:
        return None
    if not isinstance(prior, dict) or len(prior) != 1 or next(iter(prior)) not in PRIORS:
        raise ValueError(f"prior must be a dict {{'laplacian': weight}} (a weight >= 0, or "
                         f"'gcv'); got {shown(prior)}")
    weight = prior["laplacian"]
    if isinstance(weight, str):
        if weight not in CHOICES:
            raise ValueError(f"prior['laplacian'] must be a number from 0 to 1e100, or "
                             f"'gcv'; got {weight!r}")
    elif isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real) or \
            not np.isfinite(weight) or weight < 0 or weight > 1e100:
        raise ValueError(f"prior['laplacian'] must be a number from 0 to 1e100, or 'gcv'; "
                         f"got {shown(weight)}")
    else:
        weight = float(weight)
    if constraints is not None:
        raise ValueError("prior and constraints cannot be combined yet; pass one of them")
    if method not in ("lstsq", "lstsq-stats"):
        raise ValueError(f"a prior is solved on the normal equations: it takes "
                         f"method='lstsq' or 'lstsq-stats'; got method={method!r}")
    return {"laplacian": weight}


def laplacian(shape, channels):
    """The discrete Laplacian of a kernel grid of `shape` (zero beyond it), on the unknowns
    (taps in C order, `channels` per tap): (m, m)."""
    taps = int(np.prod(shape))
    index = np.arange(taps).reshape(shape)
    L = np.zeros((taps, taps))
    L[np.arange(taps), np.arange(taps)] = -2.0 * len(shape)
    for axis in range(len(shape)):
        for step in (-1, 1):
            neighbour = np.roll(index, step, axis=axis)
            inside = np.ones(shape, dtype=bool)
            edge = [slice(None)] * len(shape)
            edge[axis] = 0 if step == 1 else -1
            inside[tuple(edge)] = False  # (no wrapping: zero beyond the grid)
            L[index[inside], neighbour[inside]] = 1.0
    return np.kron(L, np.eye(channels))


def _spectrum(C, Q):
    """(t, V) with ``C V = Q V diag(t)`` and ``V^H Q V = I``."""
    import scipy.linalg

    t, V = scipy.linalg.eigh(C, Q, check_finite=False)
    return np.maximum(t, 0.0), V


def _choose(t, beta, rss_free, n, groups):
    """The weight minimising GCV, ``n RSS(w) / (n - groups - sum t / (t + w))^2``, over a
    grid of 16 decades below the largest t, refined between the best point's neighbours;
    ``beta = V^H c`` and `rss_free` the unregularised fit's residual."""
    positive = t > 0

    def score(log_weight):
        w = 10.0 ** log_weight
        rss = _rss(t, beta, rss_free, w)
        dof = n - groups - float(np.sum(t / (t + w)))
        return np.inf if dof <= 0 else n * rss / dof ** 2

    top = np.log10(max(float(t[positive].max()) if positive.any() else 1.0, 1e-300))
    return log_grid_minimum(score, top - 14, top + 2, 161)


def _rss(t, beta, rss_free, w):
    """The residual at weight w: the free fit's, plus what shrinking ``beta`` by
    ``t / (t + w)`` costs: ``sum |beta|^2 w^2 / (t (t + w)^2)`` over t > 0 (the free fit's
    coordinates ``beta / t``)."""
    keep = t > 0
    shrunk = np.abs(beta[keep]) ** 2 * w ** 2 / (t[keep] * (t[keep] + w) ** 2)
    return float(rss_free + shrunk.sum())


def solve_prior(problem, design, first, final=True):
    """The regularised fit of `design` from its statistics, with one residual pass (not when
    not `final`: an intermediate fit of a reweighting)."""
    from ._constrain import _System
    from ._normal import _assemble, _bias_shape, _indices, residual_pass
    from ._solve import residual_from_statistics
    from ._statistics import design_pass

    known = design_pass(problem, first, design)
    stats = known.statistics
    m, shape = stats.n_kernel, design.support.shape
    L = laplacian(shape, stats.channels)
    Q = L.T @ L
    chosen, solutions, parts = [], [], []
    for s in range(stats.gram.shape[0]):
        system = _System(stats.gram[s], m, int(stats.n_rows[s]), problem.bias)
        t, V = _spectrum(system.matrix, Q)
        xs, bs, per_column = [], [], []
        for j in range(stats.rhs.shape[2]):
            rhs = stats.rhs[s][:, j]
            beta = V.conj().T @ system.centred_rhs(rhs)
            free = V @ np.where(t > 0, beta / np.where(t > 0, t, 1.0), 0.0)
            free_rss = float(residual_from_statistics(
                stats.gram[s], rhs[:, np.newaxis], np.atleast_1d(stats.yy[s][j]),
                free[:, np.newaxis], system.bias_of(free, rhs)[:, np.newaxis]
                if problem.bias else None)[0])
            weight = problem.prior["laplacian"]
            if weight == "gcv":
                weight = _choose(t, beta, free_rss, max(system.n_rows, 1), system.groups)
            x = V @ (beta / (t + weight)) if weight > 0 else free
            chosen.append(weight)
            xs.append(x)
            bs.append(system.bias_of(x, rhs) if problem.bias else np.zeros(stats.groups))
            shrink = t / (t + weight) if weight > 0 else (t > 0).astype(float)
            # diag of (C + w Q)^-1 C (C + w Q)^-1 = V diag(t / (t + w)^2) V^H
            spread = np.where(t > 0, t / np.where(t > 0, (t + weight) ** 2, 1.0), 0.0)
            per_column.append((float(shrink.sum()), V, spread,
                               _rss(t, beta, free_rss, weight) if weight > 0 else free_rss))
        solutions.append((np.stack(xs, axis=1), np.stack(bs, axis=1)))
        parts.append((system, per_column))
    kernel, bias = _assemble(problem, design, solutions)
    if final:
        ss_res, _, moments = residual_pass(problem, design, known, kernel, bias, False,
                                           moments=problem.needs_moments)
    else:
        moments = None
        ss_res = np.array([[rss for _, _, _, rss in per_column] for _, per_column in parts])
    builder = EstimateBuilder(problem.kernel_shape(shape), _bias_shape(problem),
                              problem.bias, problem.dtype)
    for s, ((x, b), (system, per_column)) in enumerate(zip(solutions, parts)):
        coef, bias_index = _indices(problem, design, s)
        n = int(stats.n_rows[s])
        ysum = stats.rhs[s][m:].sum(axis=0)
        weights = float(stats.weight_sums[s].sum())
        ss_tot = np.maximum(stats.yy[s] - np.abs(ysum) ** 2 / (weights or 1.0), 0.0)
        free = Factorization(stats.gram[s], m, n, problem.bias)
        for j, (trace, V, spread, _) in enumerate(per_column):
            dof = n - trace - system.groups
            sigma2 = 1.0 if problem.absolute else float(ss_res[s][j]) / dof if dof > 0 \
                else np.nan
            variance = (np.abs(V) ** 2) @ spread
            coef_se = np.sqrt(sigma2 * variance)
            bias_se = None
            if problem.bias:
                projected = system.means @ V
                bias_var = system.inverse_counts + (np.abs(projected) ** 2) @ spread
                bias_se = np.where(system.has_rows, np.sqrt(sigma2 * bias_var), np.nan)
            if builder.wants_covariance:
                builder.add_covariance(coef[:, j], bias_index[:, j] if problem.bias else None,
                                       sigma2 * system.covariance((V * spread) @ V.conj().T,
                                                                  problem.bias))
            builder.add(coef[:, j], x[:, j], coef_se, bias_index[:, j],
                        b[:, j] if problem.bias else None, bias_se,
                        ss_res=float(ss_res[s][j]), ss_tot=float(ss_tot[j]), n_equations=n,
                        n_unknowns=m + (stats.groups if problem.bias else 0),
                        rank=free.rank + (system.groups if problem.bias else 0),
                        extremes=free.singular_extremes(), full_rank=free.full_rank)
    weight = chosen[0] if len(set(chosen)) == 1 else np.array(chosen)
    return builder.estimate("lstsq-stats", moments=moments, reg=weight,
                            prior={"laplacian": weight, "chosen_by": "gcv" if
                                   problem.prior["laplacian"] == "gcv" else "given"})
