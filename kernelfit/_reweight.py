"""Reweighted fits: the variance of a noise model at the predicted output, and robust
losses, by iteratively reweighted least squares.

``noise='poisson'`` says each output sample y (in the output's units) has variance
``read_noise^2 + mu / gain`` about its expected value mu: photon noise (``gain`` photons,
or electrons, per unit) and read noise. The fit is weighted least squares with weights
1 / variance at mu, and mu is what the kernel predicts: the first fit is unweighted, each
later one weighted by the variance at the previous one's prediction, until the kernel moves
by less than a thousandth of its standard errors (at most NOISE_ITERATIONS refits). Each
refit is one pass over the pixels for the statistics and one for the residual; the weights
are computed as each block is read (`PredictedWeights`), on Dask's workers too.

The variance is known, not estimated: the standard errors are those of weights that are
inverse variances (variance factor 1), and ``fit.noise['chi2_dof']``, the weighted residual
per degree of freedom, says whether the model holds (about 1).

A robust loss (``loss='huber'`` or ``'cauchy'``) bounds what one sample can do to the fit:
the weights are ``psi(u) / u`` at the standardised residuals ``u = r / scale`` of the
previous fit, with the scale from the least-squares residuals' median magnitude (as the MAD
estimates a normal sigma; robust to half the samples being wrong), and the tuning constants
that keep 95% efficiency on normal noise (Huber 1.345, Cauchy 2.385). From the
least-squares start (two passes), ROBUST_ITERATIONS refits of one pass each (the statistics
alone) and a last one with its residual pass: at most 6 passes over the pixels in all. The
samples whose residual exceeds OUTLIER_SIGMAS scales are counted as outliers.
"""

import dataclasses
import numbers

import numpy as np

from ._validation import shown

__all__ = ["LOSSES", "NOISE_MODELS", "Noise", "check_loss", "check_noise", "solve_robust",
           "solve_with_noise"]

NOISE_MODELS = ("poisson", "auto")
# Refits at most (after the unweighted start); they stop once the kernel moves by less than
# CONVERGED standard errors.
NOISE_ITERATIONS = 4
CONVERGED = 1e-3


LOSSES = ("squared", "huber", "cauchy")
# psi(u) / u of each robust loss, and its tuning constant (95% efficiency at the normal)
TUNING = {"huber": 1.345, "cauchy": 2.385}
# Refits of one pass (the statistics) after the least-squares start, before the last one
# (statistics and residual): 2 + ROBUST_ITERATIONS + 2 passes in all.
ROBUST_ITERATIONS = 2
OUTLIER_SIGMAS = 3.0


def check_loss(loss, weights):
    """`loss` checked; a robust loss does not take weights (a noise model, yes: the
    residuals are then standardised by its variance)."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got "
                         f"{shown(loss)}")
    if loss != "squared" and weights is not None:
        raise ValueError(f"loss={loss!r} weights the samples by their residuals: it does not "
                         f"combine with weights (pass noise= for a variance that follows the "
                         f"level)")
    return loss


@dataclasses.dataclass(frozen=True)
class Noise:
    """A checked noise model: 'poisson' with `gain` (photons per output unit) and
    `read_noise` (its standard deviation, in output units); or the line ``intercept +
    slope * mu`` that 'auto' found (at least `floor`)."""

    model: str
    gain: float = None
    read_noise: float = 0.0
    intercept: float = None
    slope: float = None
    floor: float = None

    def variance(self, mu):
        """The variance at the expected output `mu`. 'poisson': ``read_noise^2 +
        max(mu, 0) / gain``, and at least one photon's, ``1 / gain^2`` (a sample predicted
        dark is not exact); a found line: ``intercept + slope * mu``, at least `floor`."""
        if self.slope is not None:
            return np.maximum(self.intercept + self.slope * np.real(mu), self.floor)
        return np.maximum(self.read_noise ** 2 + np.maximum(np.real(mu), 0) / self.gain,
                          1.0 / self.gain ** 2)


def check_noise(noise, gain, read_noise):
    """`noise`, `gain` and `read_noise` as a `Noise`, or None without a noise model."""
    if noise is None:
        for name, value in (("gain", gain), ("read_noise", read_noise)):
            if value is not None:
                raise ValueError(f"{name} is a parameter of noise='poisson'; got {name}="
                                 f"{shown(value)} without a noise model")
        return None
    if not isinstance(noise, str) or noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {', '.join(map(repr, NOISE_MODELS))} or None; "
                         f"got {shown(noise)}")
    if noise == "auto":
        if gain is not None or read_noise is not None:
            raise ValueError("noise='auto' estimates the variance against the level itself; "
                             "pass noise='poisson' to give gain and read_noise")
        return Noise("auto")
    if gain is None:
        raise ValueError("noise='poisson' needs gain: photons (or electrons) per output unit "
                         "(1 for data in photon counts)")
    gain = _positive(gain, "gain", zero=False)
    read_noise = 0.0 if read_noise is None else _positive(read_noise, "read_noise", zero=True)
    return Noise(noise, gain, read_noise)


def _positive(value, name, zero):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or value < 0 or (value == 0 and not zero) or \
            value > 1e100 or 0 < value < 1e-100:
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero else '> 0'} "
                         f"between 1e-100 and 1e100; got {shown(value)}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class PredictedWeights:
    """The weights of a block, 1 / variance at the prediction of `kernel` (operator layout,
    taps of `support`) and `bias`: what `Pair.block` reads in place of a weights array."""

    noise: Noise
    kernel: np.ndarray
    bias: object
    support: object
    layout: str
    n_in: int
    n_out: int

    def predict(self, extended, support):
        """The prediction at the 'valid' windows (taps `support`) of one block,
        (*S_valid, C_out)."""
        from ._operator import Operator
        from ._statistics import embed

        operator = Operator(support.shape, self.layout, self.n_in, self.n_out)
        mu = operator.on(extended[np.newaxis]).forward(embed(self.kernel, self.support,
                                                             support))[0]
        return mu if self.bias is None else mu + self.bias

    def of(self, extended, support, target):
        """Weights of the block's samples (`target`: its outputs), (*S_valid, C_out)."""
        return 1.0 / self.noise.variance(self.predict(extended, support))


@dataclasses.dataclass(frozen=True)
class ResidualWeights(PredictedWeights):
    """The weights ``psi(u) / u`` of a robust `loss` at the standardised residuals
    ``u = |y - mu| / scale`` of the prediction mu; with a `noise` model, of
    ``u = |y - mu| / (scale sqrt(variance(mu)))``, and divided by the variance."""

    loss: str = "huber"
    scale: float = 1.0

    def of(self, extended, support, target):
        mu = self.predict(extended, support)
        variance = 1.0 if self.noise is None else self.noise.variance(mu)
        u = np.abs(target - mu) / (self.scale * np.sqrt(variance))
        c = TUNING[self.loss]
        if self.loss == "huber":
            return np.minimum(1.0, c / np.maximum(u, c)) / variance
        return 1.0 / (1.0 + (u / c) ** 2) / variance


# 'auto': a variance that grows with the level by less than this share of the mean variance
# over the levels seen, or by a slope within SIGNIFICANT standard errors of 0, is taken as
# constant (least squares is then right as it is).
FLAT = 0.1
SIGNIFICANT = 5.0


def fit_variance(moments):
    """The line ``variance = intercept + slope * level`` through the residual's variance
    by level bin, least squares weighted by the inverse variance of each bin's estimate
    (``2 variance^2 / count`` for normal residuals). Returns (intercept, slope, the
    slope's standard error, levels, variances, counts), or None with fewer than 3 bins."""
    levels, variances, counts = moments.variance_curve()
    if levels.size < 3:
        return None
    weights = counts / (2 * np.maximum(variances, np.finfo(float).tiny) ** 2)
    design = np.stack([np.ones_like(levels), levels], axis=1)
    normal = design.T @ (weights[:, None] * design)
    if np.linalg.matrix_rank(normal) < 2:
        return None
    intercept, slope = np.linalg.solve(normal, design.T @ (weights * variances))
    spread = float(np.sqrt(np.linalg.inv(normal)[1, 1]))
    return float(intercept), float(slope), spread, levels, variances, counts


def _found_noise(estimate):
    """'auto': the noise model the least-squares residual shows, and its report."""
    line = None if estimate.moments is None else fit_variance(estimate.moments)
    if line is None:
        return None, {"model": "auto", "level_dependent": False}
    intercept, slope, spread, levels, variances, counts = line
    mean = float(np.average(variances, weights=counts))
    span = float(levels.max() - levels.min())
    curve = [[float(a), float(b), int(c)] for a, b, c in zip(levels, variances, counts)]
    if slope * span < FLAT * mean or slope < SIGNIFICANT * spread:
        return None, {"model": "auto", "level_dependent": False, "curve": curve}
    floor = max(1e-3 * mean, np.finfo(float).tiny)
    report = {"model": "auto", "level_dependent": True, "intercept": intercept,
              "slope": slope, "floor": floor, "gain": 1.0 / slope,
              "read_noise": float(np.sqrt(intercept)) if intercept > 0 else 0.0,
              "curve": curve}
    return Noise("auto", intercept=intercept, slope=slope, floor=floor), report


def noise_of(report):
    """The Noise a fit's `noise` report describes (None: no level-dependent model)."""
    if not report or (report["model"] == "auto" and not report.get("level_dependent")):
        return None
    if report["model"] == "auto":
        return Noise("auto", intercept=report["intercept"], slope=report["slope"],
                     floor=report["floor"])
    return Noise("poisson", report["gain"], report["read_noise"])


def solve_with_noise(problem, design, first, solve):
    """Iteratively reweighted least squares under `problem.noise`, each fit by `solve`
    (problem, design, first) -> Estimate. Returns the last estimate, with
    ``estimate.noise`` the model, the refits made and the chi-square per degree of
    freedom. 'auto' first fits the variance against the level to the least-squares
    residual (a line: photon and read noise), and refits with it only when it grows with
    the level."""
    return _noise_fit(problem, design, first, solve)[0]


def _noise_fit(problem, design, first, solve):
    """`solve_with_noise`, and the Noise it weighted by (None: none, least squares)."""
    noise = problem.noise
    estimate = solve(problem, design, first)
    found = {}
    if noise.model == "auto":
        noise, found = _found_noise(estimate)
        if noise is None:  # one variance for all: least squares is the fit
            return dataclasses.replace(estimate, noise=found), None
    iterations = 0
    for iterations in range(1, NOISE_ITERATIONS + 1):
        rule = PredictedWeights(noise, np.asarray(estimate.kernel), None if estimate.bias
                                is None else np.asarray(estimate.bias), design.support,
                                problem.layout, problem.n_in, problem.n_out)
        weighted = dataclasses.replace(_with_weights(problem, rule), noise=noise)
        previous = np.asarray(estimate.kernel)
        estimate = solve(weighted, design, None)  # (new weights: every sum anew)
        moved = np.abs(np.asarray(estimate.kernel) - previous)
        spread = np.asarray(estimate.stderr)
        if np.all(moved <= CONVERGED * np.where(np.isfinite(spread), spread, 0)):
            break
    dof = estimate.n_equations - estimate.rank
    chi2_dof = estimate.ss_res / dof if dof > 0 else float("nan")
    report = found or {"model": noise.model, "gain": noise.gain,
                       "read_noise": noise.read_noise}
    return dataclasses.replace(estimate, noise={**report, "refits": iterations,
                                                "chi2_dof": float(chi2_dof)}), noise


def _with_weights(problem, rule):
    return dataclasses.replace(problem, pairs=tuple(
        dataclasses.replace(pair, weights=rule) for pair in problem.pairs))


def solve_robust(problem, design, first, solve):
    """Iteratively reweighted least squares for `problem.loss`, each fit by `solve`
    (problem, design, first, final) -> Estimate (`final` False: no residual pass). Returns
    the last estimate, with ``estimate.robust`` the loss, the scale, the refits and the
    outliers counted."""
    noise = report = None
    if problem.noise is not None:  # the noise model's fit: its standardised residual
        estimate, noise = _noise_fit(problem, design, first, solve)
        report = estimate.noise
        if noise is None:  # 'auto' found one variance for all: least squares' residuals
            problem = dataclasses.replace(problem, noise=None)
    else:  # least squares: its residual's scale
        estimate = solve(problem, design, first, True)
    scale = estimate.moments.robust_scale() if estimate.moments is not None else 0.0
    if not scale > 0:  # an exact fit: nothing to reweight
        return dataclasses.replace(estimate, robust={
            "loss": problem.loss, "scale": 0.0, "refits": 0, "outliers": 0})
    refits = 0
    for refits in range(1, ROBUST_ITERATIONS + 2):
        final = refits == ROBUST_ITERATIONS + 1
        rule = ResidualWeights(noise, np.asarray(estimate.kernel), None if estimate.bias
                               is None else np.asarray(estimate.bias), design.support,
                               problem.layout, problem.n_in, problem.n_out,
                               loss=problem.loss, scale=scale)
        weighted = _with_weights(problem, rule)
        if noise is not None:
            weighted = dataclasses.replace(weighted, noise=noise)
        if final:
            weighted = dataclasses.replace(weighted,
                                           outlier_threshold=OUTLIER_SIGMAS * scale)
        estimate = solve(weighted, design, None, final)
    robust = {"loss": problem.loss, "scale": float(scale), "refits": refits,
              "outliers": int(estimate.moments.beyond)}
    if report is not None:  # a noise model's fit (scale: of the standardised residual)
        if noise is not None:
            dof = estimate.n_equations - estimate.rank
            report = {**report, "chi2_dof": float(estimate.ss_res / dof) if dof > 0 else
                      float("nan")}
        return dataclasses.replace(estimate, robust=robust, noise=report)
    return dataclasses.replace(estimate, robust=robust)


@dataclasses.dataclass(frozen=True)
class SquaredResiduals(PredictedWeights):
    """The squared residual of each sample at the prediction: as weights, they make the
    statistics' Gram matrix the sandwich's meat, ``A^H diag(r^2) A``."""

    def of(self, extended, support, target):
        return np.abs(target - self.predict(extended, support)) ** 2


def sandwich_errors(problem, design, estimate):
    """The estimate with heteroscedasticity-consistent standard errors and covariance (the
    sandwich ``G^+ (A^H diag(r^2) A) G^+`` per system, HC0): right whatever the noise's
    variance does, where the model's assume one variance. One more pass over the pixels,
    summing the windows weighted by the squared residuals."""
    from ._normal import _indices
    from ._solve import Factorization
    from ._statistics import design_pass

    rule = SquaredResiduals(None, np.asarray(estimate.kernel), None if estimate.bias is None
                            else np.asarray(estimate.bias), design.support, problem.layout,
                            problem.n_in, problem.n_out)
    meat = design_pass(_with_weights(problem, rule), None, design).statistics
    plain = design_pass(problem, None, design).statistics
    m = plain.n_kernel
    stderr = np.full(np.shape(estimate.kernel), np.nan)
    bias_stderr = None if estimate.bias_stderr is None else np.full(
        np.shape(estimate.bias_stderr), np.nan)
    size = stderr.size
    total = size + (0 if bias_stderr is None else bias_stderr.size)
    covariance = np.zeros((total, total)) if estimate.covariance is not None else None
    for s in range(plain.gram.shape[0]):
        coef, bias_index = _indices(problem, design, s)
        unknowns = np.arange(m + (plain.groups if problem.bias else 0))
        gram = plain.gram[s][np.ix_(unknowns, unknowns)]
        factor = Factorization(gram, len(unknowns), int(plain.n_rows[s]), bias=False)
        bread = factor.solve_centred(np.eye(len(unknowns)))
        middle = meat.gram[s][np.ix_(unknowns, unknowns)]
        sandwich = bread @ middle @ bread.conj().T
        sandwich = np.real((sandwich + sandwich.conj().T) / 2)
        spread = np.sqrt(np.maximum(np.diag(sandwich), 0.0))
        stderr.flat[coef[:, 0]] = spread[:m]
        index = coef[:, 0]
        if problem.bias:
            groups = np.asarray(bias_index[:, 0]).ravel()
            bias_stderr.flat[groups] = spread[m:]
            index = np.concatenate([index, size + groups])
        if covariance is not None:
            covariance[np.ix_(index, index)] = sandwich
    for value in (stderr, bias_stderr):
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return dataclasses.replace(estimate, stderr=stderr, covariance=covariance,
                               bias_stderr=bias_stderr)


ERRORS = ("model", "sandwich")


def check_errors(errors, weights, noise, loss, method="lstsq", constraints=None,
                 prior=None):
    """`errors` checked: 'model' (the fitted model's variance) or 'sandwich' (unweighted,
    unconstrained, unregularised least squares only, for now)."""
    if not isinstance(errors, str) or errors not in ERRORS:
        raise ValueError(f"errors must be one of {', '.join(map(repr, ERRORS))}; got "
                         f"{shown(errors)}")
    if errors == "sandwich" and (weights is not None or noise is not None
                                 or loss != "squared"):
        raise ValueError("errors='sandwich' is for unweighted least squares (it does not take "
                         "weights, noise or a robust loss, whose model gives the errors)")
    if errors == "sandwich" and (constraints is not None or prior is not None
                                 or method not in ("lstsq", "lstsq-dense", "lstsq-stats")):
        raise ValueError("errors='sandwich' is for least squares as it is: not with "
                         "constraints, a prior, or method 'pinv', 'ridge' or 'tf'")
    return errors
