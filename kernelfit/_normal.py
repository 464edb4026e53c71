"""Least squares from the normal equations: the statistics of the fitted support, one
factorisation per system, and one residual pass over the pixels.

The residual pass gives the exact residual (the statistics alone lose it to cancellation on
near-exact fits) and the moments the linearity check needs; when the normal equations'
error, cond(G) eps, could matter against the kernel's own uncertainty it also refines the
solution once with ``A^H r``, which turns normal-equation accuracy into least-squares accuracy.
"""

import numpy as np

from ._solve import (
    EstimateBuilder,
    Factorization,
    Moments,
    centred_covariance,
    residual_from_statistics,
    standard_errors,
    system_indices,
    variance_factor,
)
from ._statistics import design_pass, design_tiles, embed, taps, tiles

# Up to this size of patch matrix, method='lstsq' solves densely by SVD (the most robust for
# rank-deficient data); above it, from the normal equations.
DENSE_AUTO_BYTES = 64 * 2**20


def solve_lstsq(problem, design, first, final=True):
    """Least squares by the cheaper exact path: the dense SVD for small problems, else the
    normal equations, whose cost does not grow with the kernel's area times the image's.
    Dask arrays always take the normal equations: the patch matrix would be gathered on
    the client."""
    from ._dense import dense_bytes, solve_lstsq as solve_dense

    if not problem.dask and dense_bytes(problem, design) <= DENSE_AUTO_BYTES:
        return solve_dense(problem, design, first)
    return solve_statistics(problem, design, first, final)


def solve_statistics(problem, design, first, final=True):
    """Least squares from the statistics of `design`, with one residual pass (not when
    the fit is not `final`: an intermediate one of a reweighting, whose residual sums come
    from the statistics)."""
    known = design_pass(problem, first, design)
    stats = known.statistics
    if first is not None and stats is first.total:  # the first pass's own samples
        from ._search import fit_of
        systems = fit_of(problem, first, design.support).factors
    else:
        systems = [Factorization(stats.gram[s], stats.n_kernel, int(stats.n_rows[s]),
                                 problem.bias) for s in range(stats.gram.shape[0])]
    solutions = [factor.solve(stats.rhs[s]) for s, factor in enumerate(systems)]
    refine = final and any(_worth_refining(factor, stats, s, x, b, problem.bias)
                           for s, (factor, (x, b)) in enumerate(zip(systems, solutions)))
    kernel, bias = _assemble(problem, design, solutions)
    if final:
        ss_res, gradient, moments = residual_pass(problem, design, known, kernel, bias,
                                                  refine, moments=problem.needs_moments)
    else:
        ss_res = np.stack([residual_from_statistics(stats.gram[s], stats.rhs[s], stats.yy[s],
                                                    x, b if problem.bias else None)
                           for s, (x, b) in enumerate(solutions)])
        gradient = moments = None
    builder = EstimateBuilder(problem.kernel_shape(design.support.shape),
                              _bias_shape(problem), problem.bias, problem.dtype)
    for s, (factor, (x, b)) in enumerate(zip(systems, solutions)):
        rr = ss_res[s]
        if refine:  # one step with exact residuals: A^H r instead of b - G x
            dx, db = factor.solve(gradient[s])
            delta = np.concatenate([dx, db]) if problem.bias else dx
            g = gradient[s][:delta.shape[0]]
            gram = stats.gram[s][:delta.shape[0], :delta.shape[0]]
            rr = np.maximum(rr - 2 * np.real(np.sum(np.conj(delta) * g, axis=0)) + np.real(
                np.sum(np.conj(delta) * (gram @ delta), axis=0)), 0.0)
            x, b = x + dx, b + db
        _add_system(builder, problem, design, stats, s, factor, x, b, rr)
    return builder.estimate("lstsq-stats", moments=moments)


def _worth_refining(factor, stats, s, x, b, bias):
    """Whether the normal equations' error bound, cond(G) eps |x|, could matter: above 1e-9
    of the kernel (the bound is pessimistic; errors are usually 30 times smaller), and
    above 1e-3 of its standard errors (noise dominates otherwise)."""
    s_max, s_min = factor.singular_extremes() if factor.full_rank else (1.0, 0.0)
    if s_min == 0:
        return False  # minimum-norm solution: refinement would not change its meaning
    size = float(np.max(np.abs(x), initial=0.0))
    bound = (s_max / s_min) ** 2 * np.finfo(float).eps * size
    if bound <= 1e-9 * size:
        return False
    rss = residual_from_statistics(stats.gram[s], stats.rhs[s], stats.yy[s], x,
                                   b if bias else None)
    dof = max(1, factor.n_rows - factor.rank - int(np.count_nonzero(factor.has_rows)))
    spread = np.sqrt(float(np.max(rss)) / dof * float(np.nanmin(factor.inverse_diagonal())))
    return bound > 1e-3 * spread


def _bias_shape(problem):
    return (problem.n_in,) if problem.layout == "shared" else (problem.n_out,)


def _indices(problem, design, s):
    return system_indices(problem.layout, problem.joint, design.support.shape, problem.n_in,
                          problem.n_out, s)


def _assemble(problem, design, solutions):
    """The per-system solutions as the operator's kernel and a bias per output channel."""
    kernel = np.zeros(problem.kernel_shape(design.support.shape), dtype=problem.dtype)
    bias = np.zeros(problem.n_out, dtype=problem.dtype)
    for s, (x, b) in enumerate(solutions):
        coef, bias_index = _indices(problem, design, s)
        kernel.flat[coef] = x
        if problem.bias:
            bias[bias_index] = b
    return kernel, bias


def _add_system(builder, problem, design, stats, s, factor, x, b, ss_res):
    coef, bias_index = _indices(problem, design, s)
    m = stats.n_kernel
    counts = stats.counts[s]
    n = int(counts.sum())
    ysum = stats.rhs[s][m:].sum(axis=0)
    weights = float(stats.weight_sums[s].sum())  # (n without weights)
    ss_tot = np.maximum(stats.yy[s] - np.abs(ysum) ** 2 / (weights or 1.0), 0.0)
    unscaled = centred_covariance(factor, problem.bias) if builder.wants_covariance else None
    for j in range(x.shape[1]):
        rank, coef_se, bias_se = standard_errors(factor, float(ss_res[j]), problem.absolute)
        if unscaled is not None:
            builder.add_covariance(coef[:, j], bias_index[:, j] if problem.bias else None,
                                   variance_factor(factor, float(ss_res[j]), problem.absolute)
                                   * unscaled)
        builder.add(coef[:, j], x[:, j], coef_se, bias_index[:, j],
                    b[:, j] if problem.bias else None, bias_se, ss_res=float(ss_res[j]),
                    ss_tot=float(ss_tot[j]), n_equations=n,
                    n_unknowns=m + (stats.groups if problem.bias else 0), rank=rank,
                    extremes=factor.singular_extremes(), full_rank=factor.full_rank)


def _slots(problem):
    """For each output channel: its (system, bias group or column)."""
    if problem.layout == "shared":
        return [(0, c) for c in range(problem.n_out)]
    if problem.layout == "separate" or not problem.joint:
        return [(o, 0) for o in range(problem.n_out)]
    return [(0, o) for o in range(problem.n_out)]


def residual_pass(problem, design, known, kernel, bias, refine, moments=True):
    """One pass over the fitted samples with the solved kernel (over the tiles in memory,
    when `known` has them: the kernel is then embedded in their larger support; on Dask's
    workers, for dask arrays).

    Returns the residual sum of squares per system and column, (S, R); ``[A 1]^H r`` per
    system, (S, M, R), when `refine`; and (when `moments`) the moments of the residual
    against the predicted level, for the linearity check.
    """
    stats = known.statistics
    support = design.support
    systems, columns = stats.rhs.shape[0], stats.rhs.shape[2]
    ss_res = np.zeros((systems, columns))
    gradient = np.zeros(stats.rhs.shape, dtype=stats.rhs.dtype) if refine else None
    n = max(int(stats.n_rows.sum()), 1)
    mean = stats.rhs[:, stats.n_kernel:].sum() / n
    spread = np.sqrt(max(float(stats.yy.sum()) / n - abs(mean) ** 2, 0.0))
    moments = Moments(float(np.real(mean)), spread) if moments else None
    if moments is not None:
        moments.threshold = problem.outlier_threshold
    if problem.dask:
        from ._dask import residual_pass as residual_on_dask
        return residual_on_dask(problem, design, kernel, bias, ss_res, gradient, moments)
    done = problem.progress.start("residual", (
        sum(tile.target.shape[0] for tile in known.tiles) if known.tiles is not None else
        sum(1 for _ in tiles(problem, support, design.boxes))) if problem.progress else None)
    for tile in design_tiles(problem, None, design, known):
        tile_residual(problem, design, tile, kernel, bias, ss_res, gradient, moments)
        done(tile.target.shape[0])  # (tiles stacked in a batch)
    return ss_res, gradient, moments


def standardised(problem, residual, predicted):
    """The residual as the robust scale and the outlier count see it: over the noise
    model's standard deviation at the prediction when the weights are its (whatever a
    robust loss adds to them), else as it is."""
    if not problem.absolute:
        return residual
    return residual / np.sqrt(problem.noise.variance(predicted))


def tile_residual(problem, design, tile, kernel, bias, ss_res, gradient, moments):
    """One tile's residual with the solved kernel: its energy into `ss_res`, ``[A 1]^H r``
    into `gradient` (unless None) and its moments into `moments` (unless None)."""
    support = design.support
    systems, columns = ss_res.shape
    slots = _slots(problem)
    shared = problem.layout == "shared"
    m = support.size * (problem.n_in if problem.layout == "full" else 1)
    applied = tile.applied
    if applied.use_fft:
        applied.spectra  # the block's transform: the forward pass (and adjoint) use it
    predicted = applied.forward(embed(kernel, support, tile.support))
    if problem.bias:
        predicted += bias
    residual = tile.target - predicted
    used = tile.usable
    masked = not used.all()
    if masked:
        residual[~used] = 0
    # weighted: the residual scaled by sqrt(w) (its energy is the weighted RSS, and the
    # checks see residuals of one variance); A^H W r for the gradient
    scaled = residual if tile.weight is None else residual * np.sqrt(tile.weight)
    flat = scaled.reshape(-1, scaled.shape[-1])
    energy = np.real(np.einsum("ij,ij->j", flat.conj(), flat))
    sums = flat.sum(axis=0)
    if moments is not None:
        moments.add(predicted, scaled, used if masked else None,
                    sums=(int(used.sum()), sums.sum(), energy.sum()),
                    raw=standardised(problem, residual, predicted),
                    origins=tile.origins)
    del predicted
    if tile.weight is not None:
        residual = residual * tile.weight
        sums = residual.reshape(-1, residual.shape[-1]).sum(axis=0)
    for o, (system, slot) in enumerate(slots):
        ss_res[system, 0 if shared else (slot if columns > 1 else 0)] += energy[o]
    if gradient is not None:
        correlation = taps(applied.adjoint(residual), support, tile.support)
        for s in range(systems):
            coef, _ = _indices(problem, design, s)
            gradient[s, :m] += correlation.flat[coef]
        for o, (system, slot) in enumerate(slots):
            if shared:
                gradient[system, m + slot, 0] += sums[o]
            elif columns > 1:
                gradient[system, m, slot] += sums[o]
            else:
                gradient[system, m, 0] += sums[o]
