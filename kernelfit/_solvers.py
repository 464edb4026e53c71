"""Solvers for fit_kernel, found by name in a registry so that new methods plug in.

The dense methods (lstsq, pinv, ridge) share one SVD per system; each differs only in the
filter factors it applies to the singular values, so every diagnostic is computed alike.
"""

# scipy.linalg and scipy.optimize are imported inside the functions that use them: `import kernelfit` stays fast.

import dataclasses
import importlib

import numpy as np

from ._problem import DENSE_LIMIT_BYTES

# Up to this size of patch matrix, method='lstsq' solves densely by SVD (the most robust for
# rank-deficient data); above it, from the exact normal equations (kernelfit._statistics).
DENSE_AUTO_BYTES = 64 * 2**20

# method name -> solver, or "module:function" for one imported on first use. A solver
# takes (problem, **options) and returns an Estimate.
SOLVERS = {
    "lstsq": "kernelfit._solvers:solve_lstsq",
    "lstsq-dense": "kernelfit._solvers:solve_dense_lstsq",
    "lstsq-stats": "kernelfit._statistics:solve_statistics",
    "pinv": "kernelfit._solvers:solve_pinv",
    "ridge": "kernelfit._solvers:solve_ridge",
    "tf": "kernelfit._tf:solve",
}

# The keyword options of fit_kernel that each method takes.
METHOD_OPTIONS = {
    "lstsq": (),
    "lstsq-dense": (),
    "lstsq-stats": (),
    "pinv": ("rcond",),
    "ridge": ("reg",),
    "tf": ("optimizer", "learning_rate", "max_steps", "rtol", "gtol", "dtype", "seed",
           "batch_size", "verbose", "callback"),
}


def get_solver(method):
    """The solver registered for `method` (importing it on first use)."""
    solver = SOLVERS[method]
    if isinstance(solver, str):
        module, name = solver.split(":")
        solver = SOLVERS[method] = getattr(importlib.import_module(module), name)
    return solver


@dataclasses.dataclass
class Estimate:
    """What a solver returns: the kernel in correlation orientation and its diagnostics."""

    kernel: np.ndarray
    bias: object
    stderr: np.ndarray
    bias_stderr: object
    ss_res: float
    ss_tot: float
    n_equations: int
    n_unknowns: int
    rank: int
    condition_number: float
    reg: object = None
    loss_history: object = None
    n_steps: object = None
    stop_reason: object = None
    device: object = None


class EstimateBuilder:
    """Collects each system's solution into the problem's kernel and bias, with the totals.

    Every path (dense, statistics, TensorFlow) solves independent systems; this puts their
    coefficients where `coef_index` and `bias_index` say and sums their diagnostics alike.
    """

    def __init__(self, problem):
        self.kernel = np.zeros(problem.kernel_shape, dtype=problem.dtype)
        self.stderr = np.full(problem.kernel_shape, np.nan)
        self.bias = np.zeros(problem.bias_shape, dtype=problem.dtype) if problem.bias else None
        self.bias_stderr = np.full(problem.bias_shape, np.nan) if problem.bias else None
        self.totals = dict(ss_res=0.0, ss_tot=0.0, n_equations=0, n_unknowns=0, rank=0)
        self.s_max, self.s_min = 0.0, np.inf

    def add(self, coef_index, coefficients, coef_stderr, bias_index=None, bias=None,
            bias_stderr=None, *, ss_res, ss_tot, n_equations, n_unknowns, rank, singular,
            full_rank):
        """One system: its coefficients (and bias) with their standard errors and sums."""
        self.kernel.flat[coef_index] = coefficients
        self.stderr.flat[coef_index] = coef_stderr
        if self.bias is not None and bias_index is not None:
            self.bias.flat[bias_index] = bias
            self.bias_stderr.flat[bias_index] = bias_stderr
        for name, value in (("ss_res", ss_res), ("ss_tot", ss_tot),
                            ("n_equations", n_equations), ("n_unknowns", n_unknowns),
                            ("rank", rank)):
            self.totals[name] += value
        if np.size(singular):
            self.s_max = max(self.s_max, float(singular[0]))
            self.s_min = min(self.s_min, float(singular[-1]) if full_rank else 0.0)

    def estimate(self):
        condition = self.s_max / self.s_min if self.s_min > 0 else np.inf
        return Estimate(kernel=self.kernel, bias=self.bias, stderr=self.stderr,
                        bias_stderr=self.bias_stderr, condition_number=condition,
                        **self.totals)


def solve_lstsq(problem):
    """Least squares by the cheaper exact path: the dense SVD for small problems, else the
    statistics (normal equations by FFT), whose cost does not grow with the kernel's area
    times the image's."""
    if problem.dense_bytes() <= DENSE_AUTO_BYTES:
        return solve_dense_lstsq(problem)
    from ._statistics import solve_statistics
    return solve_statistics(problem)


def solve_dense_lstsq(problem):
    """Minimum-norm least squares, by SVD, with the usual rank tolerance ``max(n, m) eps``."""
    return _solve_dense(problem, lambda s, tol, beta, b2, n, g: _truncated(s, tol))


def solve_pinv(problem, *, rcond=None):
    """Explicit pseudoinverse: singular values below ``rcond * s_max`` are discarded."""
    def factors(s, tol, beta, b2, n, g):
        cutoff = tol if rcond is None else rcond * (s[0] if s.size else 0.0)
        return _truncated(s, cutoff)
    return _solve_dense(problem, factors, explicit=True)


def solve_ridge(problem, *, reg):
    """Tikhonov regularisation ``min |A x - b|^2 + reg |x|^2``; reg='gcv' chooses it."""
    chosen = []

    def factors(s, tol, beta, b2, n, g):
        lam = _gcv(s, beta, b2, n, g) if reg == "gcv" else float(reg)
        chosen.append(lam)
        if lam == 0:
            return _truncated(s, tol)
        return s / (s ** 2 + lam)

    estimate = _solve_dense(problem, factors)
    # One parameter per system: several only when GCV chose them per channel.
    estimate.reg = chosen[0] if len(set(chosen)) == 1 else np.array(chosen)
    return estimate


def _truncated(s, cutoff):
    safe = np.where(s > cutoff, s, 1.0)
    return np.where(s > cutoff, 1.0 / safe, 0.0)


def _gcv(s, beta, b2, n, g):
    """The Tikhonov parameter that minimises generalised cross-validation.

    `beta` is ``U^H b`` and `b2` is ``|b|^2``; the part of b outside U's span is residual
    at every parameter.
    """
    import scipy.optimize

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
    grid = np.linspace(top - 14, top + 1, 151)
    scores = [score(x) for x in grid]
    best = int(np.argmin(scores))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    result = scipy.optimize.minimize_scalar(score, bounds=(low, high), method="bounded")
    return 10.0 ** (result.x if result.fun <= scores[best] else grid[best])


def _svd(A):
    import scipy.linalg

    try:
        return scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd")
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd")


def _solve_dense(problem, filter_factors, *, explicit=False):
    """Solve every system of `problem` by SVD with the given filter factors f(s).

    ``X = V diag(f) U^H B``; the covariance of X is ``sigma^2 V diag(|f|^2) V^H``. A bias
    is fitted exactly and unpenalised by centring each bias group (Frisch-Waugh-Lovell).
    """
    needed = problem.dense_bytes()
    if needed > DENSE_LIMIT_BYTES:
        rows = needed // (problem.dtype.itemsize * problem.n_coefficients)
        raise ValueError(
            f"the dense patch matrix would take {needed / 2**30:.1f} GiB ({rows} equations x "
            f"{problem.n_coefficients} unknowns; limit {DENSE_LIMIT_BYTES / 2**30:.0f} GiB); "
            f"method='lstsq' solves it exactly from the normal equations instead")
    builder = EstimateBuilder(problem)
    for system in problem.systems():
        A, B = system.A.astype(problem.dtype, copy=False), system.B
        n, m = A.shape
        r = B.shape[1]
        ss_tot = float(np.sum(np.abs(B - B.mean(axis=0)) ** 2)) if n else 0.0
        groups = system.groups
        n_groups = system.bias_index.shape[0] if groups is not None else 0
        if groups is not None:
            counts = np.bincount(groups, minlength=n_groups)
            mean_A = np.zeros((n_groups, m), dtype=A.dtype)
            mean_B = np.zeros((n_groups, r), dtype=B.dtype)
            for g in np.flatnonzero(counts):
                mean_A[g] = A[groups == g].mean(axis=0)
                mean_B[g] = B[groups == g].mean(axis=0)
            # In place: the patch matrix is this solver's own copy of the used windows.
            nonempty = np.flatnonzero(counts)
            if nonempty.size == 1:
                A -= mean_A[nonempty[0]]
            else:
                for g in nonempty:
                    A[groups == g] -= mean_A[g]
            B = B - mean_B[groups]
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
        sigma2 = ss_res / dof if dof > 0 else np.full(r, np.nan)
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
            b_var = (1.0 / np.maximum(counts, 1))[:, None] + (
                np.abs(projected.T) ** 2 @ (np.abs(f) ** 2))[:, None]
            b_stderr = np.sqrt(b_var * sigma2[None, :])
            b_stderr[~estimable] = np.nan
            bias_rank = int(np.count_nonzero(estimable))
        builder.add(system.coef_index, X, coef_stderr, system.bias_index, b, b_stderr,
                    ss_res=float(ss_res.sum()), ss_tot=ss_tot, n_equations=n * r,
                    n_unknowns=(m + n_groups) * r, rank=(rank + bias_rank) * r, singular=s,
                    full_rank=s.size == m and rank == m)
    return builder.estimate()


def gram_diagnostics(gram, n_kernel, n_rows, ss_res):
    """Rank, singular values and standard errors of one system from its Gram matrix.

    `gram` is ``[[A^H A, A^H 1], [1^H A, 1^H 1]]`` over the kernel unknowns (first
    `n_kernel`) and the bias groups (the rest), for `n_rows` equations with residual sum of
    squares `ss_res`. The bias is projected out (a Schur complement), as the dense path's
    centring does, so the numbers mean the same as there.

    Returns
    -------
    rank, bias_rank : int
        Rank of the centred kernel block, and the number of bias groups determined.
    singular : ndarray
        Singular values of the centred design, largest first.
    coef_stderr, bias_stderr : ndarray
        Standard errors (NaN where not determined or without degrees of freedom).
    """
    gram = (gram + gram.conj().T) / 2
    kk, kb, bb = gram[:n_kernel, :n_kernel], gram[:n_kernel, n_kernel:], gram[n_kernel:,
                                                                              n_kernel:]
    counts = np.real(np.diag(bb))
    has_rows = counts > 0
    bb_inv = np.diag(np.where(has_rows, 1.0 / np.where(has_rows, counts, 1.0), 0.0))
    centred = kk - kb @ bb_inv @ kb.conj().T
    eig, vectors = np.linalg.eigh(centred)
    eig, vectors = np.clip(eig[::-1], 0, None), vectors[:, ::-1]
    singular = np.sqrt(eig)
    tol = max(n_rows, n_kernel) * np.finfo(float).eps * (eig[0] if eig.size else 0.0)
    rank = int(np.sum(eig > tol))
    inverse = np.where(eig > tol, 1.0 / np.where(eig > tol, eig, 1.0), 0.0)
    dof = n_rows - rank - int(np.count_nonzero(has_rows))
    sigma2 = ss_res / dof if dof > 0 else np.nan
    in_row_space = np.sum(np.abs(vectors[:, :rank]) ** 2, axis=1) > 1 - 1e-6
    coef_var = (np.abs(vectors) ** 2) @ inverse
    coef_stderr = np.where(in_row_space, np.sqrt(sigma2 * coef_var), np.nan)
    means = (bb_inv @ kb.conj().T)  # group means of the windows, (G, n_kernel)
    projected = means @ vectors  # each mean in the eigenbasis (the conjugated V of the SVD)
    captured = np.sum(np.abs(projected[:, :rank]) ** 2, axis=1)
    estimable = has_rows & (captured >= (1 - 1e-6) * np.sum(np.abs(means) ** 2, axis=1))
    bias_var = np.diag(bb_inv).real + (np.abs(projected) ** 2) @ inverse
    bias_stderr = np.where(estimable, np.sqrt(sigma2 * bias_var), np.nan)
    return rank, int(np.count_nonzero(estimable)), singular, coef_stderr, bias_stderr
