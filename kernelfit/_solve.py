"""Solve: the methods, their options, one estimate type, and least squares on the statistics.

A method is found by name in `SOLVERS`; its options are checked against `METHOD_OPTIONS`, as
``scipy.optimize.minimize(method=..., options=...)`` does. Every path returns an `Estimate`.
"""

# scipy.linalg and scipy.sparse.linalg are imported where they are used: `import kernelfit`
# stays fast.

import dataclasses
import importlib

import numpy as np

from ._validation import check_choice, check_scalar, shown

__all__ = ["Estimate", "METHODS", "METHOD_OPTIONS", "check_options", "get_solver"]

# method name -> "module:function", imported on first use; called as
# solver(problem, design, first, **options) and returning an Estimate.
SOLVERS = {
    "lstsq": "kernelfit._normal:solve_lstsq",
    "lstsq-dense": "kernelfit._dense:solve_lstsq",
    "lstsq-stats": "kernelfit._normal:solve_statistics",
    "pinv": "kernelfit._dense:solve_pinv",
    "ridge": "kernelfit._dense:solve_ridge",
    "tf": "kernelfit._tf:solve",
}
METHODS = tuple(SOLVERS)

TF_OPTIONS = ("optimizer", "learning_rate", "max_steps", "rtol", "gtol", "dtype", "rng",
              "batch_size", "verbose", "callback")
# The options each method takes, in fit_kernel's `options` mapping.
METHOD_OPTIONS = {
    "lstsq": (),
    "lstsq-dense": (),
    "lstsq-stats": (),
    "pinv": ("rcond",),
    "ridge": ("reg",),
    "tf": TF_OPTIONS,
}


def check_options(method, options):
    """`options` checked against `method`'s table; returned complete, with defaults."""
    check_choice(method, "method", METHODS)
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict of method options; got {shown(options)}")
    accepted = METHOD_OPTIONS[method]
    for name in options:
        if name not in accepted:
            users = [m for m, names in METHOD_OPTIONS.items() if name in names]
            where = (f"it is an option of method={users[0]!r}" if users else
                     "no method takes it")
            takes = (f"method={method!r} takes " + ", ".join(repr(a) for a in accepted)
                     if accepted else f"method={method!r} takes no options")
            raise ValueError(f"options has {name!r}, which method={method!r} does not take "
                             f"({where}); {takes}")
    if method == "ridge":
        reg = options.get("reg")
        if reg is None:
            raise ValueError("method='ridge' needs options={'reg': ...}: a non-negative "
                             "number or 'gcv'")
        if reg != "gcv":
            reg = check_scalar(reg, "options['reg']", complex_ok=False)
            if reg < 0:
                raise ValueError(f"options['reg'] must be non-negative or 'gcv'; got {reg!r}")
        return {"reg": reg}
    if method == "pinv":
        rcond = options.get("rcond")
        if rcond is not None:
            rcond = check_scalar(rcond, "options['rcond']", complex_ok=False)
            if not 0 <= rcond < 1:
                raise ValueError(f"options['rcond'] must be in [0, 1); got {rcond!r}")
        return {"rcond": rcond}
    if method == "tf":
        from ._tf import check_options as check_tf
        return check_tf(**{name: options.get(name) for name in TF_OPTIONS})
    return {}


def get_solver(method):
    """The solver registered for `method` (imported on first use)."""
    module, name = SOLVERS[method].split(":")
    return getattr(importlib.import_module(module), name)


# --- the estimate ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Estimate:
    """What every solver returns: the kernel in correlation orientation and its diagnostics.

    `moments` summarise the residual against the predicted level (for the linearity check);
    `method` is the path that ran (e.g. 'lstsq-stats').
    """

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
    method: str
    moments: object = None
    reg: object = None
    loss_history: object = None
    n_steps: object = None
    stop_reason: object = None
    device: object = None
    constraints: object = None
    rank_scores: object = None
    noise: object = None
    robust: object = None
    prior: object = None
    covariance: object = None


# The full covariance of the kernel and bias is kept up to this many of them (32 MB); above,
# only the standard errors.
COVARIANCE_UNKNOWNS = 2048


class EstimateBuilder:
    """Collects each system's solution into the kernel and bias arrays, with the totals, and
    (for up to COVARIANCE_UNKNOWNS unknowns) their covariance, kernel coefficients (flat)
    then bias groups (flat); systems are independent (zero covariance between them)."""

    def __init__(self, kernel_shape, bias_shape, bias, dtype):
        self.kernel = np.zeros(kernel_shape, dtype=dtype)
        self.stderr = np.full(kernel_shape, np.nan)
        self.bias = np.zeros(bias_shape, dtype=dtype) if bias else None
        self.bias_stderr = np.full(bias_shape, np.nan) if bias else None
        self.totals = dict(ss_res=0.0, ss_tot=0.0, n_equations=0, n_unknowns=0, rank=0)
        self.s_max, self.s_min = 0.0, np.inf
        total = self.kernel.size + (self.bias.size if bias else 0)
        self.covariance = (np.zeros((total, total), dtype=np.result_type(dtype, float))
                           if total <= COVARIANCE_UNKNOWNS else None)

    @property
    def wants_covariance(self):
        return self.covariance is not None

    def add_covariance(self, coef_index, bias_index, matrix):
        """One system column's covariance over its kernel coefficients then bias groups
        (`bias_index` None without a bias)."""
        index = np.asarray(coef_index).ravel()
        if bias_index is not None:
            index = np.concatenate([index, self.kernel.size + np.asarray(bias_index).ravel()])
        self.covariance[np.ix_(index, index)] = matrix

    def add(self, coef_index, coefficients, coef_stderr, bias_index=None, bias=None,
            bias_stderr=None, *, ss_res, ss_tot, n_equations, n_unknowns, rank, extremes,
            full_rank):
        """One system: coefficients (and bias) with standard errors and sums; `extremes`
        are its largest and smallest singular values."""
        self.kernel.flat[coef_index] = coefficients
        self.stderr.flat[coef_index] = coef_stderr
        if self.bias is not None and bias_index is not None:
            self.bias.flat[bias_index] = bias
            self.bias_stderr.flat[bias_index] = bias_stderr
        for name, value in (("ss_res", ss_res), ("ss_tot", ss_tot),
                            ("n_equations", n_equations), ("n_unknowns", n_unknowns),
                            ("rank", rank)):
            self.totals[name] += value
        if np.size(extremes):
            self.s_max = max(self.s_max, float(extremes[0]))
            self.s_min = min(self.s_min, float(extremes[-1]) if full_rank else 0.0)

    def estimate(self, method, **extra):
        condition = self.s_max / self.s_min if self.s_min > 0 else np.inf
        for name in ("kernel", "stderr", "bias", "bias_stderr"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        extra.setdefault("covariance", self.covariance)
        return Estimate(kernel=self.kernel, bias=self.bias, stderr=self.stderr,
                        bias_stderr=self.bias_stderr, condition_number=condition,
                        method=method, **self.totals, **extra)


def system_indices(layout, joint, size, n_in, n_out, system):
    """Where a system's solution goes: flat indices into the kernel and bias arrays.

    Returns ``coef_index`` (m, R) and ``bias_index`` (G, R) in correlation orientation.
    """
    k = int(np.prod(size))
    if layout == "shared":
        return np.arange(k)[:, None], np.arange(n_in)[:, None]
    if layout == "separate":
        return (np.arange(k) * n_out + system)[:, None], np.array([[system]])
    m = k * n_in
    if joint:
        return np.arange(m)[:, None] * n_out + np.arange(n_out), np.arange(n_out)[None, :]
    return (np.arange(m) * n_out + system)[:, None], np.array([[system]])


# --- least squares on the normal equations -----------------------------------------------

class _Centred:
    """The normal equations ``[[K, B], [B^H, N]] [x; b] = [r_k; r_b]`` of one system with
    the bias b projected out: N (the counts per bias group) is diagonal, so the kernel solves
    the centred system ``(K - B N^-1 B^H) x = r_k - B N^-1 r_b`` (`solve_centred`, given by
    the subclass) and ``b = N^-1 (r_b - B^H x)``."""

    def _centre(self, gram, m, n_rows, bias):
        self.complex = np.iscomplexobj(gram)
        self.m, self.n_rows = m, n_rows
        self._gram = gram
        groups = gram.shape[0] - m if bias else 0
        counts = np.real(np.diagonal(gram)[m:m + groups])
        self.has_rows = counts > 0
        self.inverse_counts = np.where(self.has_rows, 1.0 / np.where(self.has_rows, counts,
                                                                     1.0), 0.0)
        self.kb = np.array(gram[:m, m:m + groups])

    def build_centred(self):
        """``C = G_kk - G_kb diag(1/n) G_kb^H`` (the bias projected out), Fortran order,
        updated in place by one rank-one update per bias group."""
        from scipy.linalg import blas

        centred = np.array(self._gram[:self.m, :self.m], order="F")
        for g in np.flatnonzero(self.has_rows):
            column = self.kb[:, g]
            if self.complex:
                centred = blas.zgerc(-self.inverse_counts[g], column, column, a=centred,
                                     overwrite_a=1)
            else:
                centred = blas.dger(-self.inverse_counts[g], column, column, a=centred,
                                    overwrite_a=1)
        return centred

    def centred_rhs(self, rhs):
        """``r_k - B N^-1 r_b`` for ``rhs = [A 1]^H b``, (M, ...)."""
        return rhs[:self.m] - (self.kb * self.inverse_counts) @ rhs[
            self.m:self.m + self.kb.shape[1]]

    def bias_of(self, x, rhs):
        """``N^-1 (r_b - B^H x)``: the bias that goes with the kernel x."""
        counts = self.inverse_counts.reshape((-1,) + (1,) * (np.ndim(x) - 1))
        return counts * (rhs[self.m:self.m + self.kb.shape[1]] - self.kb.conj().T @ x)

    def solve(self, rhs):
        """Kernel and bias solving the normal equations for ``rhs = [A 1]^H b``, (M, R)."""
        x = self.solve_centred(self.centred_rhs(rhs))
        return x, self.bias_of(x, rhs)


class Factorization(_Centred):
    """The centred normal equations of one system, factorised once.

    The bias is projected out exactly (a Schur complement, as centring each bias group of
    the patch matrix does). Full-rank systems are factorised by Cholesky, in place and from
    the lower triangle only; their diagnostics come from that factor (the inverse's diagonal
    from the factor's inverse, ``trtri``, half the work of the whole inverse; the condition
    estimate by ``pocon``; extreme eigenvalues by Lanczos iterations with the factor, only
    when asked for). Rank-deficient systems are
    eigendecomposed (minimum-norm solutions).
    """

    def __init__(self, gram, m, n_rows, bias=True):
        from scipy.linalg import lapack

        self._centre(gram, m, n_rows, bias)
        self._cholesky = self._inverse = self._inverse_diagonal = None
        self._eig = self._extreme_values = None
        centred = self.build_centred()
        lange = lapack.zlange if self.complex else lapack.dlange
        self.norm = float(lange("1", centred))
        potrf = lapack.zpotrf if self.complex else lapack.dpotrf
        factor, info = potrf(centred, lower=1, overwrite_a=1, clean=1)  # in place
        if info == 0 and np.all(np.isfinite(np.diagonal(factor))):
            self._cholesky = factor
            if not self._clearly_full_rank():
                # the exact extremes decide; the inverse (wanted for standard errors
                # anyway) makes the smallest one cheaper to find
                self.inverse_diagonal()
                lowest, highest = self._extreme_values = (self._extreme_values
                                                          or self._extremes())
                if lowest <= self.tolerance(highest):
                    self._cholesky = self._inverse = self._inverse_diagonal = None
        if self._cholesky is None and self._inverse is None:
            self._decompose()

    def tolerance(self, highest):
        """Eigenvalues of the centred Gram matrix at or below this are treated as zero."""
        return max(self.n_rows, self.m) * np.finfo(float).eps * highest

    def _clearly_full_rank(self):
        """LAPACK's O(m^2) estimate of the 1-norm condition number from the Cholesky
        factor: well inside the rank tolerance (by a factor 100 for the estimate's own
        slack; it bounds the 2-norm condition number), no eigenvalues are needed."""
        from scipy.linalg import lapack

        pocon = lapack.zpocon if self.complex else lapack.dpocon
        rcond, info = pocon(self._cholesky, self.norm, uplo="L")
        return info == 0 and rcond > 0 and 100 / rcond < 1 / (
            max(self.n_rows, self.m) * np.finfo(float).eps)

    # -- full-rank path

    def _multiply(self, v):
        """``C v`` from the factor: ``L (L^H v)``."""
        from scipy.linalg import blas

        trmv = blas.ztrmv if self.complex else blas.dtrmv
        w = trmv(self._cholesky, v, lower=1, trans=2 if self.complex else 1)
        return trmv(self._cholesky, w, lower=1)

    def _extremes(self):
        """The smallest and largest eigenvalues of the centred Gram matrix."""
        if self.m <= 400:
            values = np.linalg.eigvalsh(self.build_centred())
            return float(values[0]), float(values[-1])
        return 1.0 / self._largest_of_inverse(), self._largest()

    def _lanczos(self, multiply):
        import scipy.sparse.linalg as sla

        dtype = np.complex128 if self.complex else np.float64
        operator = sla.LinearOperator((self.m, self.m), matvec=multiply, dtype=dtype)
        # (the condition number is reported to a few digits; the rank test compares it with
        # a tolerance by orders of magnitude. tol bounds the Ritz residual relative to the
        # eigenvalue: the eigenvalue itself is far closer, to 1e-8 on a 63x63 photograph
        # system, in half the iterations of tol=1e-7 for the smallest)
        return float(np.real(sla.eigsh(operator, k=1, which="LA", tol=1e-4,
                                       return_eigenvectors=False)[0]))

    def _largest(self):
        return self._lanczos(self._multiply)

    def _largest_of_inverse(self):
        return self._lanczos(self.solve_centred)

    def solve_centred(self, rhs):
        """``C^{-1} rhs`` for the centred Gram matrix C (full rank: from the Cholesky
        factor, or from its inverse once ``trtri`` has made it), or the
        minimum-norm solution (rank-deficient)."""
        import scipy.linalg
        from scipy.linalg import blas

        if self._cholesky is not None:
            return scipy.linalg.cho_solve((self._cholesky, True), rhs, check_finite=False)
        if self._inverse is not None:  # L^-1: C^-1 rhs = L^-H (L^-1 rhs)
            rhs = np.asarray(rhs)
            dtype = np.result_type(rhs, self._inverse)
            if rhs.ndim == 1:
                trmv = blas.ztrmv if self.complex else blas.dtrmv
                w = trmv(self._inverse, rhs.astype(dtype), lower=1)
                return trmv(self._inverse, w, lower=1, trans=2 if self.complex else 1)
            if rhs.shape[1] == 0:
                return np.zeros(rhs.shape, dtype=dtype)
            trmm = blas.ztrmm if self.complex else blas.dtrmm
            w = trmm(1.0, self._inverse, rhs.astype(dtype), lower=1)
            return trmm(1.0, self._inverse, w, lower=1, trans_a=2 if self.complex else 1)
        values, vectors, keep = self._eig
        return vectors[:, keep] @ ((vectors[:, keep].conj().T @ rhs)
                                   / values[keep].reshape((-1,) + (1,) * (np.ndim(rhs) - 1)))

    def _decompose(self):
        values, vectors = np.linalg.eigh(self.build_centred())
        values, vectors = np.clip(values[::-1], 0, None), vectors[:, ::-1]
        keep = values > self.tolerance(values[0] if values.size else 0.0)
        self._eig = (values, vectors, keep)

    # -- what every path reports

    @property
    def full_rank(self):
        return self._eig is None

    @property
    def rank(self):
        return self.m if self.full_rank else int(self._eig[2].sum())

    def singular_extremes(self):
        """Largest and smallest singular values of the centred design (0 if deficient)."""
        if self.full_rank:
            if self._extreme_values is None:
                self._extreme_values = self._extremes()
            lowest, highest = self._extreme_values
            return np.sqrt(np.clip([highest, lowest], 0, None))
        values = self._eig[0]
        return np.sqrt(np.array([values[0], values[-1]])) if values.size else np.zeros(0)

    def inverse_diagonal(self):
        """The diagonal of the (pseudo)inverse of the centred Gram matrix; NaN where a
        coefficient is not determined."""
        if self._inverse_diagonal is None:
            self._inverse_diagonal = self._compute_inverse_diagonal()
        return self._inverse_diagonal

    def _compute_inverse_diagonal(self):
        from scipy.linalg import lapack

        if self.full_rank:
            if self._extreme_values is None and self.m > 400:
                highest = self._largest()  # needs the factor, which trtri overwrites
            else:
                highest = None
            trtri = lapack.ztrtri if self.complex else lapack.dtrtri
            inverse, info = trtri(self._cholesky, lower=1, overwrite_c=1)  # in place
            if info != 0:
                raise np.linalg.LinAlgError(f"trtri failed ({info})")
            self._cholesky, self._inverse = None, inverse  # L^-1, lower triangle
            if highest is not None:
                self._extreme_values = (1.0 / self._largest_of_inverse(), highest)
            # (C^-1)_ii = sum_k |(L^-1)_ki|^2: the squared norms of L^-1's columns (the rows
            # of its transpose, contiguous: L^-1 is in Fortran order)
            rows = inverse.T
            return np.real(np.einsum("ij,ij->i", np.conj(rows) if self.complex else rows,
                                     rows))
        values, vectors, keep = self._eig
        inverse = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
        variance = (np.abs(vectors) ** 2) @ inverse
        in_row_space = np.sum(np.abs(vectors[:, keep]) ** 2, axis=1) > 1 - 1e-6
        return np.where(in_row_space, variance, np.nan)

    def bias_variance(self):
        """Per bias group: the variance factor of its estimate, NaN where not determined."""
        means = (self.inverse_counts[:, None] * self.kb.conj().T)  # (G, m)
        if self.full_rank:
            projected = self.solve_centred(means.conj().T)  # C^{-1} means^H
            quadratic = np.real(np.sum(means * projected.T, axis=1))
            return np.where(self.has_rows, self.inverse_counts + quadratic, np.nan)
        values, vectors, keep = self._eig
        projected = means @ vectors
        captured = np.sum(np.abs(projected[:, keep]) ** 2, axis=1)
        estimable = self.has_rows & (captured >= (1 - 1e-6) * np.sum(np.abs(means) ** 2,
                                                                         axis=1))
        inverse = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
        variance = self.inverse_counts + (np.abs(projected) ** 2) @ inverse
        return np.where(estimable, variance, np.nan)


class Preconditioned(_Centred):
    """The centred normal equations of one system, solved by conjugate gradients
    preconditioned with a Factorization of similar ones (`near`) and started from `start`
    (their solution, (m, R), when given); a factorisation of its own when that does not
    converge."""

    def __init__(self, gram, m, n_rows, bias, near, start=None, steps=100, tolerance=1e-12):
        self._centre(gram, m, n_rows, bias)
        self.near, self.start = near, start
        self.steps, self.tolerance = steps, tolerance
        self._fallback = None

    @property
    def full_rank(self):
        return self.near.full_rank if self._fallback is None else self._fallback.full_rank

    @property
    def rank(self):
        return self.m if self._fallback is None else self._fallback.rank

    def _multiply(self, v):
        kk = self._gram[:self.m, :self.m]
        return kk @ v - (self.kb * self.inverse_counts) @ (self.kb.conj().T @ v)

    def solve_centred(self, b):
        """``C^{-1} b`` by conjugate gradients from `start` (any start converges; the pooled
        solution is near for the system's own right-hand side)."""
        if self._fallback is None:
            if self.start is None or np.shape(self.start) != np.shape(b):
                x, r = np.zeros_like(b), b.copy()
            else:
                x = np.array(self.start, dtype=np.result_type(b, self.start))
                r = b - self._multiply(x)
            z = self.near.solve_centred(r)
            p = z.copy()
            rz = np.real(np.sum(np.conj(r) * z, axis=0))
            norm = np.linalg.norm(b, axis=0)
            for _ in range(self.steps):
                if np.all(np.linalg.norm(r, axis=0) <= self.tolerance * norm):
                    return x
                q = self._multiply(p)
                alpha = rz / np.real(np.sum(np.conj(p) * q, axis=0))
                x += alpha * p
                r -= alpha * q
                z = self.near.solve_centred(r)
                rz, previous = np.real(np.sum(np.conj(r) * z, axis=0)), rz
                p = z + (rz / previous) * p
            self._fallback = Factorization(self._gram, self.m, self.n_rows,
                                           self.kb.shape[1] > 0)
        return self._fallback.solve_centred(b)


def residual_from_statistics(gram, rhs, yy, x, bias):
    """``|y - A x - 1 b|^2`` per column from the statistics alone (accurate to about
    eps * |y|^2: enough to compare fits, not to report an exact one)."""
    solution = np.concatenate([x, bias]) if bias is not None and bias.size else x
    m = solution.shape[0]
    g, r = gram[:m, :m], rhs[:m]
    value = yy - 2 * np.real(np.sum(np.conj(solution) * r, axis=0)) + np.real(
        np.sum(np.conj(solution) * (g @ solution), axis=0))
    return np.maximum(value, 0.0)


# --- what the residual says about the model ------------------------------------------------

# The side of JPEG's blocks (and of MPEG's, and of most DCT codecs').
BLOCK = 8
# The residual's variance is gathered in this many bins of the standardised predicted level,
# over this many standard deviations either side of the output's mean.
LEVEL_BINS, LEVEL_RANGE = 48, 4.0
# Neighbour pairs a tile gives the block-grid sums, per axis (every few rows or columns).
GRID_SAMPLES = 1 << 18


class Moments:
    """Sums over the fitted samples of the residual r against the predicted level p, from
    which the linearity check regresses r on a cubic in p (without keeping the samples),
    and of r against the local contrast of p and against its neighbour, from which it tells
    a structured residual (a non-linear filter, compression) from noise.

    `centre` and `scale` standardise p (``z = (p - centre) / scale``) so that the sums of
    its powers stay well conditioned; any values near the output's mean and spread do.
    """

    SAMPLES = 1 << 16

    def __init__(self, centre, scale):
        self.centre, self.scale = centre, scale or 1.0
        self.n = self.n_regressed = 0
        self.r2_regressed = 0.0
        self.sum_r = 0.0
        self.sum_r2 = 0.0
        self.sum_p2 = 0.0
        self.low, self.high = np.inf, -np.inf
        self.real = True
        self.vv = np.zeros((4, 4))
        self.vr = np.zeros(4)
        # along the last spatial axis: sums of 1, c, c^2, r^2, r^4, r^2 c for the contrast
        # c = |p[i] - p[i-1]| + |p[i+1] - p[i]|, and of 1, r[i] r[i+1], r[i]^2 + r[i+1]^2
        self.contrast = np.zeros(6)
        self.neighbours = np.zeros(4)
        # the raw residuals (before any weights; standardised by a noise model's variance):
        # about SAMPLES of them, evenly spaced, for a robust scale; and how many exceed
        # `threshold` (all samples), when one is set
        self.sample = np.zeros(0)
        self.threshold, self.beyond = None, 0
        # 2-D images: per axis and per phase modulo the block side (where in a block the
        # pair starts), the sum of squared differences of neighbouring raw residuals and
        # their count: JPEG's independent blocks show as larger jumps across block edges
        self.grid = np.zeros((2, BLOCK, 2))
        # the raw residual's variance against the predicted level: per bin of the
        # standardised level z in [-LEVEL_RANGE, LEVEL_RANGE], (count, sum p, sum r^2)
        self.levels = np.zeros((LEVEL_BINS, 3))

    def add(self, predicted, residual, used=None, sums=None, raw=None, origins=None):
        """Add samples: predicted values and residuals, where `used` (default: all), and
        the residuals before weights (`raw`, default `residual`).

        The count, sum and energy of the residuals take every sample (`sums`, when the
        caller has them already); the rest (the predicted level, the cubic regression, the
        raw sample) at most SAMPLES evenly spaced ones of each call (the tests have power
        to spare).
        """
        if sums is None:
            kept_r = residual if used is None else residual[used]
            sums = (kept_r.size, kept_r.sum(), float(np.real(np.vdot(kept_r, kept_r))))
        count, total, energy = sums
        if count == 0:
            return
        raw = residual if raw is None else raw
        if origins is not None and raw.ndim == 4 and not np.iscomplexobj(raw):
            self._add_grid(raw, used, origins)
        if self.threshold is not None:
            exceeds = np.abs(raw) > self.threshold
            self.beyond += int(np.count_nonzero(exceeds if used is None else exceeds & used))
        self._add_sample(raw if used is None else raw[used])
        self.n += int(count)
        self.sum_r = self.sum_r + total
        self.sum_r2 += float(energy)
        if predicted.ndim >= 3 and predicted.shape[-2] >= 3 and not (
                np.iscomplexobj(predicted) or np.iscomplexobj(residual)):
            # about 2^16 samples (correlations with standard errors of 0.004: plenty), as
            # whole lines along the last spatial axis: every few rows of an image, one
            # stretch of a signal
            if predicted.ndim > 3:
                fewer = (slice(None), slice(None, None, max(1, predicted.size >> 16)))
            else:
                fewer = (slice(None), slice(0, max(3, (1 << 16) // max(1, predicted.shape[0]
                                                                      * predicted.shape[-1]))))
            self._add_structure(predicted[fewer], residual[fewer],
                                None if used is None else used[fewer])
        if predicted.ndim > 1:  # whole rows of the first spatial axis, every step-th
            step = max(1, predicted.size // self.SAMPLES)
            every = (slice(None), slice(None, None, step))
            predicted, residual, raw = predicted[every], residual[every], raw[every]
            used = None if used is None else used[every]
        predicted, residual, raw = predicted.reshape(-1), residual.reshape(-1), raw.reshape(-1)
        if used is not None:
            used = used.reshape(-1)
            predicted, residual, raw = predicted[used], residual[used], raw[used]
        if predicted.size == 0:
            return
        if not (np.iscomplexobj(predicted) or np.iscomplexobj(raw)):
            z = np.clip((predicted - self.centre) / self.scale, -LEVEL_RANGE, LEVEL_RANGE)
            bins = np.minimum(((z + LEVEL_RANGE) / (2 * LEVEL_RANGE) * LEVEL_BINS).astype(int),
                              LEVEL_BINS - 1)
            self.levels[:, 0] += np.bincount(bins, minlength=LEVEL_BINS)
            self.levels[:, 1] += np.bincount(bins, predicted, minlength=LEVEL_BINS)
            self.levels[:, 2] += np.bincount(bins, raw * raw, minlength=LEVEL_BINS)
        self.sum_p2 += float(np.real(np.vdot(predicted, predicted))) * count / predicted.size
        if np.iscomplexobj(predicted) or np.iscomplexobj(residual):
            self.real = False  # tone curves act on real levels: no curvature test
            level = np.abs(predicted)
            self.low, self.high = min(self.low, level.min()), max(self.high, level.max())
            return
        self.low = min(self.low, predicted.min())
        self.high = max(self.high, predicted.max())
        self.n_regressed += predicted.size
        self.r2_regressed += float(residual @ residual)
        z = (predicted - self.centre) / self.scale
        z2 = z * z
        z3 = z2 * z
        # the Gram matrix of [1, z, z^2, z^3] needs the sums of z^0..z^6; dot products
        powers = np.array([z.size, z.sum(), z2.sum(), z3.sum(), z2 @ z2, z2 @ z3, z3 @ z3])
        self.vv += powers[np.add.outer(np.arange(4), np.arange(4))]
        self.vr += [residual.sum(), residual @ z, residual @ z2, residual @ z3]

    def merge(self, other):
        """Add the sums of `other` (the same centre and scale; other samples) into these."""
        self.n += other.n
        self.n_regressed += other.n_regressed
        self.r2_regressed += other.r2_regressed
        self.sum_r = self.sum_r + other.sum_r
        self.sum_r2 += other.sum_r2
        self.sum_p2 += other.sum_p2
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.real = self.real and other.real
        for name in ("vv", "vr", "contrast", "neighbours"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.beyond += other.beyond
        self.grid = self.grid + other.grid
        self.levels = self.levels + other.levels
        self._add_sample(other.sample)
        return self

    def _add_grid(self, raw, used, origins):
        """Neighbour differences of (B, H, W, C) residuals by phase of the block grid;
        `origins` are each slot's first sample (row, column) in its image (None: unknown,
        left out). About GRID_SAMPLES pairs a slot and axis: along the rows of every
        step-th column, and along the columns of every step-th row."""
        for b, origin in enumerate(origins):
            if origin is None:
                continue
            r = raw[b]
            u = None if used is None else used[b]
            step = max(1, r.size // GRID_SAMPLES)
            for axis in (0, 1):
                n = r.shape[axis]
                if n < 2:
                    continue
                fewer = (slice(None), slice(None, None, step)) if axis == 0 else (
                    slice(None, None, step),)
                values = r[fewer]
                low = (slice(None, -1),) if axis == 0 else (slice(None), slice(None, -1))
                high = (slice(1, None),) if axis == 0 else (slice(None), slice(1, None))
                jump = (values[high] - values[low]) ** 2
                if u is not None:
                    kept = u[fewer]
                    both = kept[high] & kept[low]
                    jump = np.where(both, jump, 0.0)
                    count = both.sum(axis=tuple(a for a in range(jump.ndim) if a != axis))
                else:
                    count = np.full(n - 1, jump.size // (n - 1))
                other = tuple(a for a in range(jump.ndim) if a != axis)
                phase = (origin[axis] + np.arange(n - 1)) % BLOCK
                self.grid[axis, :, 0] += np.bincount(phase, jump.sum(axis=other),
                                                     minlength=BLOCK)
                self.grid[axis, :, 1] += np.bincount(phase, count, minlength=BLOCK)

    def blocks(self):
        """The block grid the residual shows, as JPEG leaves it: per axis, (the phase of
        the block edge, how periodic the jumps are, the jump across the edge over the
        median jump). The jumps rise towards the edges over a few samples, so the edge is
        the centre of the profile of mean square jumps by phase (its first circular
        harmonic's angle), and the harmonic's amplitude over the profile's sum measures
        the periodicity (0 for white noise). None where too few pairs were seen."""
        found = []
        phases = np.arange(BLOCK)
        for axis in (0, 1):
            total, count = self.grid[axis, :, 0], self.grid[axis, :, 1]
            if count.min() < 1000 or total.sum() <= 0:
                return None
            mean = total / count
            harmonic = np.sum(mean * np.exp(2j * np.pi * phases / BLOCK))
            edge = int(np.round(np.angle(harmonic) * BLOCK / (2 * np.pi))) % BLOCK
            found.append((edge, float(abs(harmonic) / mean.sum()),
                          float(mean[edge] / np.median(mean))))
        return tuple(found)

    def _add_sample(self, values):
        """Keep about SAMPLES of the raw residuals' magnitudes: every step-th of `values`,
        and every other one of the kept when they pass 2 * SAMPLES."""
        values = np.abs(np.asarray(values)).reshape(-1)
        step = max(1, values.size // self.SAMPLES)
        self.sample = np.concatenate([self.sample, values[::step]])
        while self.sample.size > 2 * self.SAMPLES:
            self.sample = self.sample[::2]

    def variance_curve(self):
        """The raw residual's variance against the predicted level, per level bin with at
        least 50 samples: (levels, variances, counts)."""
        count, level, energy = self.levels.T
        seen = count >= 50
        return (level[seen] / count[seen], energy[seen] / count[seen], count[seen])

    def robust_scale(self):
        """The residual's scale from its median magnitude, as the MAD estimates a normal
        sigma: ``median(|r|) / 0.6745`` (about the residual's median, 0 for a fit with a
        bias or an unbiased one). 0 without samples."""
        if not self.sample.size:
            return 0.0
        return float(np.median(self.sample) / 0.6744897501960817)

    def _add_structure(self, predicted, residual, used):
        """The contrast and neighbour sums of (B, ..., S_last, C) arrays, along S_last (in
        units of `scale`: the fourth powers stay well inside float64)."""
        predicted, residual = predicted / self.scale, residual / self.scale
        step = np.abs(np.diff(predicted, axis=-2))
        contrast = step[..., :-1, :] + step[..., 1:, :]
        middle = residual[..., 1:-1, :]
        first, second = residual[..., :-1, :], residual[..., 1:, :]
        if used is not None:
            inside = used[..., 1:-1, :] & used[..., :-2, :] & used[..., 2:, :]
            contrast, middle = contrast[inside], middle[inside]
            both = used[..., :-1, :] & used[..., 1:, :]
            first, second = first[both], second[both]
        contrast, middle = contrast.ravel(), middle.ravel()
        first, second = first.ravel(), second.ravel()
        squared = middle * middle
        self.contrast += [contrast.size, contrast.sum(), contrast @ contrast, squared.sum(),
                          squared @ squared, squared @ contrast]
        self.neighbours += [first.size, first @ second, (first @ first + second @ second) / 2,
                            (first.sum() + second.sum()) / 2]

    def structure(self):
        """(correlation of r^2 with the local contrast, correlation of neighbouring r about
        their mean, samples): both near 0 for noise; None where too few samples were seen."""
        n, c, cc, r2, r4, r2c = self.contrast
        pairs, cross, energy, total = self.neighbours
        if n < 50 or pairs < 50:
            return None
        var_c, var_r2 = cc / n - (c / n) ** 2, r4 / n - (r2 / n) ** 2
        with_contrast = (r2c / n - (r2 / n) * (c / n)) / np.sqrt(var_c * var_r2) \
            if var_c > 0 and var_r2 > 0 else 0.0
        mean = total / pairs
        variance = energy / pairs - mean ** 2
        with_neighbour = (cross / pairs - mean ** 2) / variance if variance > 0 else 0.0
        return float(with_contrast), float(with_neighbour), int(min(n, pairs))

    def rss(self, columns):
        """Residual sum of squares after regressing r on the first `columns` powers of z."""
        import scipy.linalg

        vv, vr = self.vv[:columns, :columns], self.vr[:columns]
        coefficients = scipy.linalg.lstsq(vv, vr, check_finite=False)[0]
        return max(self.r2_regressed - float(vr @ coefficients), 0.0)


def log_grid_minimum(score, low, high, points):
    """The x in [low, high] minimising ``score(x)`` (x a log10 parameter, as GCV's): the best
    of `points` evenly spaced, refined by a bounded search between its neighbours; returns
    ``10 ** x``."""
    import scipy.optimize

    grid = np.linspace(low, high, points)
    scores = [score(x) for x in grid]
    best = int(np.argmin(scores))
    bounds = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    found = scipy.optimize.minimize_scalar(score, bounds=bounds, method="bounded")
    return 10.0 ** (found.x if found.fun <= scores[best] else grid[best])


def joint_covariance(kernel, means, inverse_counts, has_rows):
    """The covariance factor of a kernel and its bias groups (multiply by the residual
    variance) from the kernel's, `kernel` (m, m): the bias ``b = N^-1 r_b - M x`` with
    the groups' mean windows M (G, m) has ``Cov(x, b) = -K M^H`` and ``Cov(b) = N^-1 +
    M K M^H``. Groups without samples: NaN."""
    if means is None or not len(inverse_counts):
        return kernel
    cross = -kernel @ means.conj().T
    groups = np.diag(inverse_counts).astype(kernel.dtype) + means @ kernel @ means.conj().T
    out = np.block([[kernel, cross], [cross.conj().T, groups]])
    empty = np.flatnonzero(~np.asarray(has_rows))
    m = kernel.shape[0]
    out[m + empty, :] = np.nan
    out[:, m + empty] = np.nan
    return out


def variance_factor(factorization, ss_res, absolute=False):
    """The residual variance of one system column (1 for `absolute` inverse-variance
    weights), NaN without degrees of freedom."""
    dof = factorization.n_rows - factorization.rank - int(
        np.count_nonzero(factorization.has_rows))
    return 1.0 if absolute else ss_res / dof if dof > 0 else np.nan


def centred_covariance(factorization, bias):
    """``sigma^-2 Cov`` of a system's kernel and bias from its factorisation: the
    (pseudo)inverse of the centred Gram matrix, and the bias's from it."""
    m = factorization.m
    kernel = factorization.solve_centred(np.eye(m, dtype=np.complex128 if
                                                factorization.complex else np.float64))
    kernel = (kernel + kernel.conj().T) / 2
    if not bias:
        return kernel
    means = factorization.inverse_counts[:, None] * factorization.kb.conj().T
    return joint_covariance(kernel, means, factorization.inverse_counts,
                            factorization.has_rows)


def standard_errors(factorization, ss_res, absolute=False):
    """Rank (with the determined bias groups), coefficient and bias standard errors of one
    system and column, from its factorisation and residual sum of squares (with a
    variance factor of 1 when the weights are `absolute` inverse variances)."""
    rank = factorization.rank
    n_groups = int(np.count_nonzero(factorization.has_rows))
    dof = factorization.n_rows - rank - n_groups
    sigma2 = 1.0 if absolute else ss_res / dof if dof > 0 else np.nan
    coef = np.sqrt(sigma2 * factorization.inverse_diagonal())
    bias_variance = factorization.bias_variance()
    bias = np.sqrt(sigma2 * bias_variance)
    return rank + int(np.count_nonzero(np.isfinite(bias_variance))), coef, bias
