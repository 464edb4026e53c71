"""Constrained fits: least squares on the statistics with a kernel that is non-negative,
sums to a given value, is symmetric, or is a sum of a few separable terms.

Every constraint acts on the solve stage only: the statistics of the fitted support (the
Gram matrix, its correlation with the outputs) are those of the free fit, and each system's
bias is projected out exactly as in the free fit (a Schur complement), so the constrained
problem is a quadratic in the kernel alone::

    minimise  x^H C x / 2 - c^H x     (C: the centred Gram matrix, c: the centred rhs)

A symmetric kernel is a linear map of fewer parameters, ``x = P p`` (one per orbit of taps
under the symmetry); a fixed sum is one linear equality; a non-negative kernel bounds every
parameter below (an active-set method, Lawson and Hanson's NNLS with the equality carried
along, exact: the bounds that hold are met to rounding); a rank-r kernel ``U V^T`` is
bilinear and solved by alternating least squares, each half step a linear problem of the
same kind. The standard errors are those of the parameters that are free at the solution
(bounds that hold fix theirs, with standard error 0), mapped to the kernel by the
problem's Jacobian, with the residual variance of the exact residual pass.
"""

import dataclasses
import numbers

import numpy as np

from ._solve import (
    EstimateBuilder,
    Factorization,
    _Centred,
    joint_covariance,
    residual_from_statistics,
)
from ._validation import check_choice, check_scalar, shown

__all__ = ["CONSTRAINTS", "Constraints", "check_constraints", "solve_constrained"]

CONSTRAINTS = ("nonneg", "sum", "symmetry", "rank")
SYMMETRIES = ("point", "mirror", "radial")
# Methods whose solution the constraints replace (the others refuse them).
CONSTRAINED_METHODS = ("lstsq", "lstsq-stats")


@dataclasses.dataclass(frozen=True)
class Constraints:
    """The constraints of a fit, checked: `total` is the kernel sum (None: free), `rank`
    an int, 'auto' or None (free)."""

    nonneg: bool = False
    total: object = None
    symmetry: object = None
    rank: object = None

    def as_dict(self, rank=None):
        """The mapping a user passes, with the rank found (`rank`) for 'auto'."""
        out = {}
        if self.nonneg:
            out["nonneg"] = True
        if self.total is not None:
            out["sum"] = self.total
        if self.symmetry is not None:
            out["symmetry"] = self.symmetry
        if self.rank is not None:
            out["rank"] = self.rank if rank is None else rank
        return out


def check_constraints(constraints, method):
    """`constraints` (a mapping, see fit_kernel) as `Constraints`, or None when it has none."""
    if constraints is None:
        return None
    if not isinstance(constraints, dict):
        raise TypeError(f"constraints must be a dict with keys among "
                        f"{', '.join(map(repr, CONSTRAINTS))}; got {shown(constraints)}")
    for key in constraints:
        if key not in CONSTRAINTS:
            raise ValueError(f"constraints has {shown(key)}, which is not a constraint; the "
                             f"keys are {', '.join(map(repr, CONSTRAINTS))}")
    nonneg = constraints.get("nonneg", False)
    if not isinstance(nonneg, (bool, np.bool_)):
        raise TypeError(f"constraints['nonneg'] must be True or False; got {shown(nonneg)}")
    total = constraints.get("sum")
    if total is not None:
        total = check_scalar(total, "constraints['sum']", complex_ok=False)
        if not np.isfinite(total):
            raise ValueError(f"constraints['sum'] must be finite; got {total!r}")
        total = float(total)
        if nonneg and total < 0:
            raise ValueError(f"constraints conflict: a non-negative kernel cannot sum to "
                             f"{total!r}; drop the non-negativity or give a sum >= 0")
    symmetry = constraints.get("symmetry")
    if symmetry is not None:
        check_choice(symmetry, "constraints['symmetry']", SYMMETRIES)
    rank = constraints.get("rank")
    if rank is not None and not (isinstance(rank, str) and rank == "auto"):
        if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, numbers.Integral) \
                or rank < 1:
            raise ValueError(f"constraints['rank'] must be a positive integer or 'auto'; "
                             f"got {shown(rank)}")
        rank = int(rank)
    if rank is not None and symmetry is not None:
        raise ValueError("constraints 'rank' and 'symmetry' cannot be combined (a symmetric "
                         "low-rank kernel has factors tied to each other); pass one of them")
    found = Constraints(bool(nonneg), total, symmetry, rank)
    if found == Constraints():
        return None
    if method not in CONSTRAINED_METHODS:
        raise ValueError(f"constraints are solved on the normal equations: they take "
                         f"method={' or '.join(map(repr, CONSTRAINED_METHODS))}; got "
                         f"method={method!r}")
    return found


def check_for_data(constraints, *, n_spatial, size, layout, n_in, dtype):
    """The checks that need the data's shape and type (raised before any pixel is read)."""
    if constraints is None:
        return
    if np.dtype(dtype).kind == "c":
        raise ValueError("constraints need real data; the data are complex (fit the free "
                         "kernel)")
    if constraints.rank is not None:
        if n_spatial != 2:
            raise ValueError(f"constraints['rank'] needs a 2-D kernel (a sum of outer "
                             f"products of a column and a row); the kernel has {n_spatial} "
                             f"spatial axes")
        if layout == "full" and n_in > 1:
            raise ValueError("constraints['rank'] needs one input channel per kernel "
                             "(channels 'shared' or 'separate'); channels='full' mixes "
                             f"{n_in} of them")
        if size != "auto" and constraints.rank != "auto":
            check_rank(constraints.rank, size)


def check_rank(rank, size):
    if rank > min(size):
        raise ValueError(f"constraints['rank'] {rank} is above the kernel's smaller side: "
                         f"a {size[0]}x{size[1]} kernel has rank at most {min(size)}")


# --- the parameters of a symmetric kernel -----------------------------------------------------

def orbits(shape, symmetry):
    """Per tap (flat, C order) of a kernel of `shape`: the index of its parameter under
    `symmetry` ('point': k[i] = k[-i]; 'mirror': unchanged by reversing any axis;
    'radial': one value per distance from the centre; None: every tap its own), numbered
    in order of first appearance."""
    index = np.indices(shape).reshape(len(shape), -1).T  # (taps, D)
    last = np.array(shape) - 1
    if symmetry is None:
        keys = [tuple(i) for i in index]
    elif symmetry == "point":
        keys = [min(tuple(i), tuple(last - i)) for i in index]
    elif symmetry == "mirror":
        keys = [tuple(np.minimum(i, last - i)) for i in index]
    else:  # radial: twice the offsets from the centre are integers
        keys = [int(np.sum((2 * i - last) ** 2)) for i in index]
    numbers_of = {}
    return np.array([numbers_of.setdefault(key, len(numbers_of)) for key in keys])


def symmetry_map(shape, symmetry, channels):
    """The 0/1 matrix P (taps * channels, parameters): kernel = P @ parameters (tap-major,
    channel-minor, as in the statistics)."""
    orbit = orbits(shape, symmetry)
    q = int(orbit.max()) + 1
    P = np.zeros((orbit.size * channels, q * channels))
    for c in range(channels):
        P[np.arange(orbit.size) * channels + c, orbit * channels + c] = 1.0
    return P


# --- one quadratic with linear constraints ----------------------------------------------------

def _solve(H, b, n_rows):
    """``H^+ b`` (the minimum-norm solution where H is singular) and its factorisation."""
    factor = Factorization(H, H.shape[0], n_rows, bias=False)
    return factor.solve_centred(b), factor


def _null_space(row):
    """An orthonormal basis (n, n - 1) of the vectors orthogonal to `row` (a Householder
    reflection: exact, O(n^2))."""
    n = row.size
    v = row / np.linalg.norm(row)
    v = v.copy()
    v[0] += np.copysign(1.0, v[0]) if v[0] != 0 else 1.0
    reflection = np.eye(n) - 2.0 * np.outer(v, v) / (v @ v)
    return reflection[:, 1:]


def minimise(H, g, row, t, nonneg, n_rows, start=None):
    """``argmin p^T H p / 2 - g^T p`` subject to ``row @ p = t`` (when `row` is not None)
    and ``p >= 0`` (when `nonneg`). Returns (p, fixed): `fixed` marks the parameters held at
    their bound of 0.

    Without bounds, the equality is solved in its null space (the minimum-norm solution of a
    singular H). With them: the active-set method of Lawson and Hanson (NNLS) with the
    equality carried along, started from a feasible point (`start` scaled onto the
    equality, or the equal split of `t`): the best point on the free parameters, stepping
    back to the first bound it crosses, until none is crossed; then the held parameter
    whose multiplier is most negative is released, until none is.
    """
    n = g.size
    if not nonneg:
        return _on_free(H, g, row, t, np.ones(n, dtype=bool), n_rows)[0], \
            np.zeros(n, dtype=bool)
    if row is not None and t == 0:
        return np.zeros(n), np.ones(n, dtype=bool)  # the only feasible point
    if row is not None and not (np.all(row >= 0) and np.any(row > 0)):
        raise ValueError("constraints conflict: a non-negative kernel cannot reach the sum "
                         "(no coefficient adds to it, as when a separable factor is all "
                         "zero); drop 'sum' or the other constraint")
    p = np.zeros(n) if start is None else np.maximum(np.asarray(start, dtype=float), 0.0)
    if row is not None:
        p = p * (t / (row @ p)) if row @ p > 0 else np.full(n, t / row.sum())
    free = p > 0
    released = None
    for _ in range(3 * n + 10):
        multiplier = 0.0
        while free.any():
            s, multiplier = _on_free(H, g, row, t, free, n_rows)
            if np.all(s[free] > 0):
                p = s
                break
            if released is not None and s[released] <= 0:
                # the released bound holds again at once: optimal to rounding
                free[released] = False
                return p, ~free
            crossing = np.flatnonzero(free & (s <= 0))
            steps = p[crossing] / (p[crossing] - s[crossing])
            alpha = float(np.min(steps))
            p = p + alpha * (s - p)
            p[crossing[steps <= alpha]] = 0.0
            free &= p > 0
            p[~free] = 0.0
            released = None
        gradient = H @ p - g - (0.0 if row is None else multiplier * row)
        held = ~free
        scale = 10 * n * np.finfo(float).eps * max(float(np.abs(g).max(initial=0.0)),
                                                   float(np.abs(H @ p).max(initial=0.0)))
        if not held.any() or np.all(gradient[held] >= -scale):
            return p, held
        released = int(np.flatnonzero(held)[np.argmin(gradient[held])])
        free[released] = True
    return p, ~free  # (Lawson and Hanson's method ends in finitely many steps)


def _on_free(H, g, row, t, free, n_rows):
    """The minimiser over the `free` parameters (the others 0) with ``row @ p = t``;
    returns (p, the equality's multiplier)."""
    n = g.size
    p = np.zeros(n)
    index = np.flatnonzero(free)
    Hf, gf = H[np.ix_(index, index)], g[index]
    if row is None:
        p[index] = _solve(Hf, gf, n_rows)[0]
        return p, 0.0
    rf = row[index]
    if not np.any(rf) and t == 0:  # the sum is met whatever these are
        return _on_free(H, g, None, t, free, n_rows)
    if not np.any(rf):
        raise ValueError("constraints conflict: the kernel's sum cannot be reached (every "
                         "free coefficient has weight 0 in it, as when a separable factor is "
                         "all zero); drop 'sum' or the other constraint")
    if index.size == 1:
        p[index] = t / rf[0]
        return p, float((Hf[0, 0] * p[index[0]] - gf[0]) / rf[0])
    particular = rf * (t / (rf @ rf))
    N = _null_space(rf)
    q = _solve(N.T @ Hf @ N, N.T @ (gf - Hf @ particular), n_rows)[0]
    p[index] = particular + N @ q
    # H p - g = multiplier * row on the free set
    residual = Hf @ p[index] - gf
    return p, float(residual @ rf / (rf @ rf))


# --- a sum of separable terms ----------------------------------------------------------------

ALS_STEPS = 2000
ALS_TOLERANCE = 1e-13


def _low_rank(C, c, shape, rank, nonneg, total, n_rows, start):
    """The rank-`rank` kernel ``U V^T`` (shape (k1, k2)) minimising the quadratic, by
    alternating least squares from the truncated SVD of `start` (the free solution).
    Returns (x, U, V, fixed U, fixed V)."""
    k1, k2 = shape
    C4 = C.reshape(k1, k2, k1, k2)
    c2 = c.reshape(k1, k2)
    u_svd, s, vt = np.linalg.svd(start.reshape(k1, k2))
    U = u_svd[:, :rank] * np.sqrt(s[:rank])
    V = vt[:rank].T * np.sqrt(s[:rank])
    if nonneg:  # the factors of a non-negative term are of one sign: make it +
        signs = np.sign(U.sum(axis=0) + (U.sum(axis=0) == 0))
        U, V = np.abs(U * signs), np.abs(V * signs)
        U, V = np.where(U > 0, U, 1e-3 * U.max(initial=1.0)), np.where(
            V > 0, V, 1e-3 * V.max(initial=1.0))
    if total == 0:  # terms of zero sum meet it (both factors free to move off it later)
        V = V - V.mean(axis=0)
    elif total is not None:
        scale = float(np.sum(U.sum(axis=0) * V.sum(axis=0)))
        if abs(scale) <= 1e-8 * abs(total) * max(1.0, float(np.abs(U).max(initial=0) *
                                                          np.abs(V).max(initial=0))):
            # terms whose sums vanish cannot be scaled onto the sum: start from flat ones
            U = np.full((k1, rank), 1.0 / k1) + (U if not nonneg else 0.0)
            V = np.full((k2, rank), 1.0 / k2) + (V if not nonneg else 0.0)
            scale = float(np.sum(U.sum(axis=0) * V.sum(axis=0)))
        U = U * (total / scale)
    previous = np.inf
    fixed_u = fixed_v = None
    for _ in range(ALS_STEPS):
        # U given V: x[i, j] = sum_t U[i, t] V[j, t]
        H = np.einsum("jt,ijkl,lu->itku", V, C4, V, optimize=True).reshape(k1 * rank,
                                                                         k1 * rank)
        g = np.einsum("jt,ij->it", V, c2).ravel()
        row = None if total is None else np.tile(V.sum(axis=0), k1)
        u, fixed_u = minimise(H, g, row, total, nonneg, n_rows, start=U.ravel())
        U = u.reshape(k1, rank)
        H = np.einsum("it,ijkl,ku->jtlu", U, C4, U, optimize=True).reshape(k2 * rank,
                                                                         k2 * rank)
        g = np.einsum("it,ij->jt", U, c2).ravel()
        row = None if total is None else np.tile(U.sum(axis=0), k2)
        v, fixed_v = minimise(H, g, row, total, nonneg, n_rows, start=V.ravel())
        V = v.reshape(k2, rank)
        x = (U @ V.T).ravel()
        value = 0.5 * x @ C @ x - c @ x
        if previous - value <= ALS_TOLERANCE * (abs(value) + abs(c @ x)):
            break
        previous = value
    return x, U, V, fixed_u, fixed_v


def _low_rank_jacobian(U, V):
    """d vec(U V^T) / d (vec U, vec V): (k1 k2, (k1 + k2) r)."""
    k1, rank = U.shape
    k2 = V.shape[0]
    du = np.einsum("ik,jt->ijkt", np.eye(k1), V).reshape(k1 * k2, k1 * rank)
    dv = np.einsum("it,jl->ijlt", U, np.eye(k2)).reshape(k1 * k2, k2 * rank)
    return np.concatenate([du, dv], axis=1)


# --- the covariance of a constrained solution -------------------------------------------------

def _covariance(C, J, rows, fixed, n_rows):
    """The kernel's covariance factor (multiply by the residual variance) for parameters p
    with kernel ``x = J p`` near the solution, equalities ``rows @ p = const`` and the
    `fixed` parameters held: ``K (K^T C K)^+ K^T`` with K = J restricted to the free
    parameters and to the equalities' null space. Returns (K, the factorisation of
    K^T C K, its rank)."""
    K = J[:, ~fixed]
    if rows is not None:
        rows = rows[:, ~fixed]
        if rows.size and np.any(rows):
            K = K @ _null_space(rows[0])
    factor = Factorization(K.T @ C @ K, K.shape[1], n_rows, bias=False) if K.shape[1] \
        else None
    return K, factor, (factor.rank if factor is not None else 0)


def _quadratic_form_diagonal(K, factor):
    """diag(K H^+ K^T) for the factorisation of H."""
    if factor is None:
        return np.zeros(K.shape[0])
    return np.maximum(np.einsum("ij,ji->i", K, factor.solve_centred(K.T.copy())), 0.0)


# --- the solver ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Solved:
    x: np.ndarray
    variance: np.ndarray   # per coefficient, times the residual variance
    bias_terms: object     # (K, factor) for the bias variance
    parameters: int        # the free parameters' effective number
    rank: object = None


def _solve_column(constraints, C, c, shape, channels, n_rows, rank):
    """One system's column under the constraints: `_Solved`."""
    m = C.shape[0]
    if constraints.nonneg and constraints.total == 0:  # the one kernel that meets both
        return _Solved(np.zeros(m), np.zeros(m), (np.zeros((m, 0)), None), 0, rank)
    P = symmetry_map(shape, constraints.symmetry, channels) if constraints.symmetry \
        else np.eye(m)
    if rank is None:
        H, g = P.T @ C @ P, P.T @ c
        row = None if constraints.total is None else P.sum(axis=0)
        p, fixed = minimise(H, g, row, constraints.total, constraints.nonneg, n_rows)
        x, J = P @ p, P
        rows = None if row is None else row[np.newaxis]
    else:
        free = minimise(C, c, None if constraints.total is None else np.ones(m),
                        constraints.total, False, n_rows)[0]
        x, U, V, fixed_u, fixed_v = _low_rank(C, c, shape, rank, constraints.nonneg,
                                              constraints.total, n_rows, free)
        J = _low_rank_jacobian(U, V)
        fixed = np.concatenate([fixed_u, fixed_v])
        rows = None
        if constraints.total is not None:  # d sum(U V^T) = (V^T 1) dU + (U^T 1) dV
            rows = np.concatenate([np.tile(V.sum(axis=0), shape[0]),
                                   np.tile(U.sum(axis=0), shape[1])])[np.newaxis]
    K, factor, parameters = _covariance(C, J, rows, fixed, n_rows)
    return _Solved(x, _quadratic_form_diagonal(K, factor), (K, factor), parameters, rank)


def _rss(gram, rhs, yy, x, bias):
    return float(residual_from_statistics(gram, rhs[:, np.newaxis], np.atleast_1d(yy),
                                          x[:, np.newaxis], None if bias is None
                                          else bias[:, np.newaxis])[0])


def _column_with_rank(constraints, system, rhs, yy, shape, channels, bias):
    """A column's solution; for ``rank='auto'``, the rank with the lowest BIC (ranks tried
    from 1 up, until two in a row score worse than the best), and the scores."""
    C, c, n_rows = system.matrix, system.centred_rhs(rhs), system.n_rows
    n = max(n_rows, 1)
    if constraints.rank is None:
        return _solve_column(constraints, C, c, shape, channels, n_rows, None), None
    if constraints.rank != "auto":
        check_rank(constraints.rank, shape)
        return _solve_column(constraints, C, c, shape, channels, n_rows,
                             constraints.rank), None
    scores, best, worse = {}, None, 0
    for rank in range(1, min(shape) + 1):
        solved = _solve_column(constraints, C, c, shape, channels, n_rows, rank)
        b = system.bias_of(solved.x, rhs) if bias else None
        rss = max(_rss(system._gram, rhs, yy, solved.x, b), np.finfo(float).tiny * n)
        scores[rank] = float(n * np.log(rss / n) + (solved.parameters + system.groups)
                             * np.log(n))
        if best is None or scores[rank] < scores[best.rank]:
            best, worse = solved, 0
        else:
            worse += 1
            if worse == 2:
                break
    return best, scores


class _System(_Centred):
    """One system's normal equations with the bias projected out, the centred matrix C
    built (the constrained solvers multiply by it), and the bias variance of a
    constrained kernel."""

    def __init__(self, gram, m, n_rows, bias):
        self._centre(gram, m, n_rows, bias)
        self.matrix = np.asarray(self.build_centred())
        self.groups = int(np.count_nonzero(self.has_rows))

    @property
    def means(self):
        """The bias groups' mean windows, (G, m)."""
        return self.inverse_counts[:, None] * self.kb.conj().T

    def covariance(self, kernel, bias):
        """The covariance factor of the kernel (`kernel`, (m, m)) and, with a `bias`, its
        groups (`joint_covariance`)."""
        if not bias:
            return kernel
        return joint_covariance(kernel, self.means, self.inverse_counts, self.has_rows)

    def bias_variance(self, K, factor):
        """Per bias group: its variance factor given the kernel's, ``K (K^T C K)^+ K^T``."""
        means = self.means
        projected = means @ K
        quadratic = (np.zeros(means.shape[0]) if factor is None else np.einsum(
            "gi,ig->g", projected, factor.solve_centred(projected.T.copy())))
        return np.where(self.has_rows, self.inverse_counts + np.maximum(quadratic, 0.0),
                        np.nan)


def solve_constrained(problem, design, first, final=True):
    """The constrained fit of `design` from its statistics, with one residual pass (not
    when the fit is not `final`: an intermediate one of a reweighting)."""
    from ._normal import _assemble, _bias_shape, _indices, residual_pass
    from ._statistics import design_pass

    constraints = problem.constraints
    known = design_pass(problem, first, design)
    stats = known.statistics
    m, shape = stats.n_kernel, design.support.shape
    solutions, solved_all, rank_found, rank_scores = [], [], None, None
    for s in range(stats.gram.shape[0]):
        system = _System(stats.gram[s], m, int(stats.n_rows[s]), problem.bias)
        xs, bs, solved_here = [], [], []
        for j in range(stats.rhs.shape[2]):
            rhs = stats.rhs[s][:, j]
            solved, scores = _column_with_rank(constraints, system, rhs, stats.yy[s][j],
                                               shape, stats.channels, problem.bias)
            if scores is not None and rank_scores is None:
                rank_scores = scores
            rank_found = solved.rank if rank_found is None else max(rank_found, solved.rank
                                                                    or 0)
            xs.append(solved.x)
            bs.append(system.bias_of(solved.x, rhs) if problem.bias else
                      np.zeros(stats.groups))
            solved_here.append(solved)
        solutions.append((np.stack(xs, axis=1), np.stack(bs, axis=1)))
        solved_all.append((system, solved_here))
    kernel, bias = _assemble(problem, design, solutions)
    if final:
        ss_res, _, moments = residual_pass(problem, design, known, kernel, bias, False,
                                           moments=problem.needs_moments)
    else:
        moments = None
        ss_res = np.stack([[_rss(stats.gram[s], stats.rhs[s][:, j], stats.yy[s][j],
                                 x[:, j], b[:, j] if problem.bias else None)
                            for j in range(x.shape[1])] for s, (x, b) in enumerate(solutions)])
    builder = EstimateBuilder(problem.kernel_shape(shape), _bias_shape(problem),
                              problem.bias, problem.dtype)
    free = [Factorization(stats.gram[s], m, int(stats.n_rows[s]), problem.bias)
            for s in range(stats.gram.shape[0])]
    for s, ((x, b), (system, solved_here)) in enumerate(zip(solutions, solved_all)):
        coef, bias_index = _indices(problem, design, s)
        n = int(stats.n_rows[s])
        ysum = stats.rhs[s][m:].sum(axis=0)
        weights = float(stats.weight_sums[s].sum())  # (n without weights)
        ss_tot = np.maximum(stats.yy[s] - np.abs(ysum) ** 2 / (weights or 1.0), 0.0)
        for j, solved in enumerate(solved_here):
            dof = n - solved.parameters - system.groups
            sigma2 = 1.0 if problem.absolute else float(ss_res[s][j]) / dof if dof > 0 \
                else np.nan
            coef_se = np.sqrt(sigma2 * solved.variance)
            bias_se = (np.sqrt(sigma2 * system.bias_variance(*solved.bias_terms))
                       if problem.bias else None)
            if builder.wants_covariance:
                K, factor = solved.bias_terms
                kernel = K @ factor.solve_centred(K.conj().T.copy()) if factor is not None \
                    else np.zeros((m, m))
                builder.add_covariance(coef[:, j], bias_index[:, j] if problem.bias else None,
                                       sigma2 * system.covariance(kernel, problem.bias))
            builder.add(coef[:, j], x[:, j], coef_se, bias_index[:, j],
                        b[:, j] if problem.bias else None, bias_se,
                        ss_res=float(ss_res[s][j]), ss_tot=float(ss_tot[j]), n_equations=n,
                        n_unknowns=m + (stats.groups if problem.bias else 0),
                        rank=free[s].rank + (system.groups if problem.bias else 0),
                        extremes=free[s].singular_extremes(), full_rank=free[s].full_rank)
    return builder.estimate("lstsq-stats", moments=moments,
                            constraints=constraints.as_dict(rank_found),
                            rank_scores=rank_scores)
