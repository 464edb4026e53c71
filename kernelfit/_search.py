"""Search: the kernel's size, placement and edge rule, from sub-blocks of the first pass.

The first pass gathers the statistics of the largest support any question needs (`plan`).
Every candidate support inside it is then a sub-block, fitted from the statistics alone and
scored on the same samples; the edge rule is found from thin tiles along the border.
"""

# scipy.stats is imported where it is used: `import kernelfit` stays fast.

import dataclasses
import itertools

import numpy as np

from ._geometry import Box, Support, candidate_supports, region
from ._operator import Operator
from ._solve import Factorization, Preconditioned, residual_from_statistics, system_indices
from ._statistics import statistics_for
from ._validation import BOUNDARIES

RULES = ("fill", "edge", "wrap", "symmetric", "reflect")
# The evidence box (see `evidence_support`): at most this many times the fit's unknowns (at
# least the minimum), and a factorisation at most one of EVIDENCE_UNKNOWNS unknowns dearer.
EVIDENCE_FACTOR = 2
EVIDENCE_MINIMUM = 128
EVIDENCE_UNKNOWNS = 1024
# Above this many unknowns, fits of half the rows are solved by preconditioned conjugate
# gradients rather than factorised (O(m^2) per step against O(m^3)).
PRECONDITIONED_UNKNOWNS = 1024
# size='auto' searches only supports the data can judge: at least this many output samples per
# unknown of the largest support (the regression rule of thumb). With fewer, large supports fit
# the few samples left inside the image almost exactly, and BIC rewards them: a 20x20 crop of a
# 3x3 blur came back 7x7 from a 15x15 search, a 200x200 one 2x2 from a 199x199 search (4
# samples). And at most about half the data along each axis, whatever the number of pairs.
SAMPLES_PER_UNKNOWN = 10


@dataclasses.dataclass(frozen=True)
class Design:
    """The fit that will be solved: the taps (correlation orientation), the output samples
    of each pair, and the edge rule (`pad_mode` None: windows inside the input)."""

    support: Support
    boxes: tuple
    pad_mode: object
    boundary: object


@dataclasses.dataclass(frozen=True)
class Choice:
    """What the search decided, and its evidence."""

    design: Design
    size_scores: object = None
    boundary_scores: object = None
    boundary_noise: object = None   # interior residual RMS, when no rule reproduced the border
    frame: object = None   # per axis (before, after): the border the filter left unchanged
    size_limit: object = None   # size='auto': the largest size searched, when the data capped it


# --- the first pass ----------------------------------------------------------------------

def plan(problem):
    """The first pass: the support and samples of every question, and the larger support
    whose statistics are the evidence against a given size and placement.

    Returns (support, boxes per pair, pad_mode, evidence support or None).
    """
    mode = problem.mode
    in_shapes = [pair.in_shape for pair in problem.pairs]
    if mode != "same":
        support = problem.support(problem.size, (0,) * problem.n_spatial)
        rule = problem.pad_mode if problem.boundary != "auto" else BOUNDARIES["fill"]
        return (support, tuple(region(shape, support, mode, rule) for shape in in_shapes),
                rule, None)
    smallest = tuple(min(shape[i] for shape in in_shapes) for i in range(problem.n_spatial))
    evidence = None
    if problem.size == "auto":
        extent, _ = search_extent(problem)
        box = Support(tuple(-(e // 2) for e in extent), extent)
    elif problem.origin == "auto":  # every placement of the size that holds the anchor
        extent = tuple(min(2 * k - 1, n) for k, n in zip(problem.size, smallest))
        box = Support(tuple(-min(k - 1, (e - 1) // 2) for k, e in zip(problem.size, extent)),
                      extent)
    else:
        box = problem.support(problem.size, problem.origin)
        if problem.checks:
            evidence = evidence_support(box, smallest)
            evidence = None if evidence == box else evidence
    rule = problem.pad_mode
    return box, tuple(region(shape, box, mode, rule) for shape in in_shapes), rule, evidence


def search_extent(problem):
    """size='auto': the largest support searched, and the one `max_size` asks for (odd, and
    within the data), per axis.

    The search box is the largest centred odd box inside the asked one, and at most about half
    the smallest input along each axis, that leaves at least SAMPLES_PER_UNKNOWN output samples
    (all pairs, before masks) per unknown of a system.
    """
    smallest = [min(pair.in_shape[i] for pair in problem.pairs)
                for i in range(problem.n_spatial)]

    def odd(n):
        return max(1, n if n % 2 else n - 1)

    asked = tuple(odd(min(problem.max_size, n)) for n in smallest)
    half = tuple(odd((n + 1) // 2) for n in smallest)
    # one system per output channel ('shared': one for all), with the taps of every input
    # channel it mixes ('full')
    shared = problem.n_out if problem.layout == "shared" else 1
    mixed = problem.n_in if problem.layout == "full" else 1
    for reach in range(max(asked), 0, -2):
        extent = tuple(min(a, h, reach) for a, h in zip(asked, half))
        box = Support(tuple(-(e // 2) for e in extent), extent)
        samples = shared * sum(region(pair.in_shape, box, "same", problem.pad_mode).size
                               for pair in problem.pairs)
        if samples >= SAMPLES_PER_UNKNOWN * (box.size * mixed + int(problem.bias)):
            break
    return extent, asked


def evidence_support(support, shape):
    """The larger support whose statistics are the evidence against a size and placement:
    the lags of every placement of the support's size that holds the anchor (``2K - 1``
    taps per axis), narrowed evenly to at most EVIDENCE_FACTOR times the fit's unknowns (at
    least EVIDENCE_MINIMUM) and to a factorisation that costs at most one of
    EVIDENCE_UNKNOWNS unknowns more than the fit's, and to the data.

    Every placement is covered for 1-D filters and small kernels (a causal FIR of 63 taps,
    a 5x5 kernel); larger 2-D kernels get a ring of a few taps (a 15x15 kernel 21x21),
    enough for the one-sample anchors of even kernels and kernels a few taps larger.
    """
    budget = min(max(EVIDENCE_FACTOR * support.size, EVIDENCE_MINIMUM),
                 (support.size ** 3 + EVIDENCE_UNKNOWNS ** 3) ** (1 / 3))
    for narrow in range(max(support.shape)):
        lo = tuple(min(-(k - 1) + narrow, a) for k, a in zip(support.shape, support.lo))
        hi = tuple(max(k - 1 - narrow, h) for k, h in zip(support.shape, support.hi))
        candidate = Support(lo, tuple(b - a + 1 for a, b in zip(lo, hi)))
        if candidate.size <= budget and all(e <= n for e, n in zip(candidate.shape, shape)):
            return candidate
    return support


# --- fits from sub-blocks ----------------------------------------------------------------

class SubFit:
    """Least squares for a support inside the first pass's, from its sub-block alone.

    With `like` (a SubFit of similar statistics: one half of the rows against the whole)
    and many unknowns, the systems are solved by conjugate gradients preconditioned with
    `like`'s factorisations and started from its solutions, instead of factorised anew.
    """

    def __init__(self, problem, stats, support, like=None, bias=None):
        self.problem, self.support = problem, support
        self.bias = bias = problem.bias if bias is None else bias
        self.stats = stats = stats.restrict(support)
        m = stats.n_kernel
        if like is not None and m > PRECONDITIONED_UNKNOWNS:
            self.factors = [Preconditioned(stats.gram[s], m, int(stats.n_rows[s]),
                                           bias, near, like.solutions[s][0])
                            for s, near in enumerate(like.factors)]
        else:
            self.factors = [Factorization(stats.gram[s], m, int(stats.n_rows[s]), bias)
                            for s in range(stats.gram.shape[0])]
        self.solutions = [f.solve(stats.rhs[s]) for s, f in enumerate(self.factors)]
        self.rss = np.array([residual_from_statistics(
            stats.gram[s], stats.rhs[s], stats.yy[s], x, b if bias else None)
            for s, (x, b) in enumerate(self.solutions)])
        columns = stats.rhs.shape[2]
        self.n = int(stats.n_rows.sum()) * columns
        self.p = (m + (stats.groups if bias else 0)) * columns * len(self.factors)
        self.yy = float(stats.yy.sum())

    def floor(self, scale):
        """Below this residual sum of squares the statistics cannot tell fits apart: the
        rounding of the sums themselves, or 1e-10 of the output's scale."""
        return max((1e-10 * scale) ** 2 * self.n, 1e-12 * self.yy)

    def total_rss(self, scale):
        return max(float(self.rss.sum()), self.floor(scale))

    def bic(self, scale):
        """Bayesian information criterion: n ln(RSS / n) + p ln n."""
        n = max(self.n, 1)
        return float(n * np.log(self.total_rss(scale) / n) + self.p * np.log(n))

    def kernel(self):
        """Kernel (operator layout, correlation orientation) and bias per output channel."""
        problem = self.problem
        kernel = np.zeros(problem.kernel_shape(self.support.shape), dtype=problem.dtype)
        bias = np.zeros(problem.n_out, dtype=problem.dtype)
        for s, (x, b) in enumerate(self.solutions):
            coef, bias_index = system_indices(problem.layout, problem.joint,
                                              self.support.shape, problem.n_in, problem.n_out,
                                              s)
            kernel.flat[coef] = x
            if self.bias:
                bias[bias_index] = b
        return kernel, bias

    def stderr(self, scale):
        """Standard errors in the kernel's layout, from the (floored) residual."""
        problem = self.problem
        stderr = np.full(problem.kernel_shape(self.support.shape), np.nan)
        for s, factor in enumerate(self.factors):
            coef, _ = system_indices(problem.layout, problem.joint, self.support.shape,
                                     problem.n_in, problem.n_out, s)
            dof = factor.n_rows - factor.rank - int(np.count_nonzero(factor.has_rows))
            for j in range(coef.shape[1]):
                rss = max(float(self.rss[s][j]), self.floor(scale) / max(1, self.rss.size))
                sigma2 = rss / dof if dof > 0 else np.nan
                stderr.flat[coef[:, j]] = np.sqrt(sigma2 * factor.inverse_diagonal())
        return stderr


def fit_of(problem, first, support, which="total", bias=None):
    """The SubFit of `support` on the first pass's samples ('total'), its top or bottom half
    of the rows, or the evidence's samples ('evidence'), made once per call (kept in
    ``first.fits``); with `bias`, with or without a bias whatever the call asked."""
    key = (which, support, bias)
    if key not in first.fits:
        if which in ("total", "evidence"):
            fit = SubFit(problem, first.total if which == "total" else first.evidence,
                         support, bias=bias)
        else:
            like = fit_of(problem, first, support)
            top = first.top
            stats = top if which == "top" else first.total.restrict(support) - \
                top.restrict(support)
            fit = SubFit(problem, stats, support, like=like)
        first.fits[key] = fit
    return first.fits[key]


def _scale(stats):
    return float(np.sqrt(stats.yy.sum() / max(int(stats.n_rows.sum()), 1))) or 1.0


# --- size and placement ------------------------------------------------------------------

def locate(problem, first, bias=None):
    """Choose the support (size and placement) by BIC among sub-blocks of the first pass
    (with `bias`: with or without a bias, whatever the call asked).

    Returns (support, scores) with scores keyed by (size, origin) in the user's convention.
    """
    stats, box = first.total, first.support
    scale = _scale(stats)
    big = fit_of(problem, first, box, bias=bias)
    kernel, _ = big.kernel()
    magnitude = np.abs(kernel)
    stderr = big.stderr(scale)
    stderr = np.where(np.isfinite(stderr), stderr, np.inf)
    # Least squares on rounded integer outputs is biased at about 5e-4 of the peak (the
    # outputs lie on a lattice); exact fits leave 1e-6-level noise. Below these floors a
    # coefficient is not evidence of a larger kernel.
    quantised = any(p.output.dtype.kind in "biu" for p in problem.pairs)
    floor = (5e-4 if quantised else 1e-6) * float(magnitude.max(initial=0.0))
    significant = magnitude > 5 * np.sqrt(stderr ** 2 + floor ** 2)
    while significant.ndim > box.ndim:  # a coefficient matters if it does in any channel
        significant = significant.any(axis=-1)
    candidates = _candidates(problem, box, significant)
    scores, fits, best = {}, {}, None
    for support in candidates:
        fit = fit_of(problem, first, support, bias=bias)
        score = fit.bic(scale)
        scores[(support.shape, support.origin(problem.convention))] = score
        fits[support] = fit
        if best is None or score < best[0] - 1e-9 * abs(best[0]):
            best = (score, support)
    chosen = best[1]
    if problem.size == "auto" and chosen != candidates[0] and significant.any():
        # BIC on hundreds of thousands of 8-bit samples can reward coefficients that no
        # test finds: keep a larger support only if what it adds is significant.
        core = _core(significant, box)
        if core in fits and not _adds_significant(fits[chosen], core, floor, scale):
            chosen = core
    return chosen, scores


def _core(significant, box):
    """The smallest support holding every significant coefficient and the anchor."""
    ndim = significant.ndim
    lo, hi = [], []
    for axis in range(ndim):
        hits = np.flatnonzero(significant.any(axis=tuple(a for a in range(ndim) if a != axis)))
        lo.append(min(int(hits[0]) + box.lo[axis], 0))
        hi.append(max(int(hits[-1]) + box.lo[axis], 0))
    return Support(tuple(lo), tuple(h - a + 1 for a, h in zip(lo, hi)))


def _candidates(problem, box, significant):
    """Supports inside the box that hold the anchor, smallest first."""
    ndim = box.ndim
    supports = set()
    if problem.size == "auto":
        if significant.any():
            core = _core(significant, box)
            low, high = list(core.lo), list(core.hi)
        else:
            low, high = [0] * ndim, [0] * ndim
        # the box of significant coefficients, and one sample more on any side
        for grow in itertools.product(*[[(0, 0), (1, 0), (0, 1)]] * ndim):
            lo = tuple(max(a - g[0], b) for a, g, b in zip(low, grow, box.lo))
            hi = tuple(min(a + g[1], b) for a, g, b in zip(high, grow, box.hi))
            supports.add(Support(lo, tuple(h - a + 1 for a, h in zip(lo, hi))))
        # and the centred odd squares, for a table of scores by size
        for k in range(1, min(box.shape) + 1, 2):
            supports.add(Support((-(k // 2),) * ndim, (k,) * ndim))
    else:
        supports.update(candidate_supports(box, problem.size))
    if problem.constraints is not None and problem.constraints.symmetry is not None:
        # a symmetric kernel is symmetric about its support's centre: centred ones only
        supports = {s for s in supports if all(
            k % 2 and lo == -(k // 2) for k, lo in zip(s.shape, s.lo))} or {
            Support((0,) * ndim, (1,) * ndim)}
    return sorted((s for s in supports if box.contains(s)),
                  key=lambda s: (s.size, s.shape, s.lo))


def _adds_significant(fit, core, floor, scale):
    """Whether the coefficients of `fit` outside `core` are, together, nonzero.

    A joint chi-square test: a Gaussian's faint tails are each within 2 stderr of zero,
    yet dozens of them together are not noise.
    """
    import scipy.stats

    kernel, _ = fit.kernel()
    stderr = fit.stderr(scale)
    outside = np.ones(fit.support.shape, dtype=bool)
    outside[tuple(slice(c - s, c - s + e) for s, c, e in
                  zip(fit.support.lo, core.lo, core.shape))] = False
    kernel = np.abs(kernel)
    while kernel.ndim > outside.ndim:  # every channel's coefficients count
        outside = outside[..., np.newaxis]
    outside = np.broadcast_to(outside, kernel.shape)
    usable = outside & np.isfinite(stderr)
    if not usable.any():
        return False
    chi2 = float(np.sum(kernel[usable] ** 2 / (stderr[usable] ** 2 + floor ** 2)))
    return bool(scipy.stats.chi2.sf(chi2, int(usable.sum())) < 1e-6)


# --- the decision ------------------------------------------------------------------------

def choose(problem, first):
    """The design to solve: support, samples and edge rule, with the search's evidence."""
    in_shapes = [pair.in_shape for pair in problem.pairs]
    if problem.mode != "same":
        support = first.support
        if problem.boundary == "auto" and problem.mode == "full":
            return _full_mode_rule(problem, first)
        return Choice(Design(support, first.boxes, first.pad_mode, problem.boundary))
    size_scores = None
    if problem.size == "auto" or problem.origin == "auto":
        support, size_scores = locate(problem, first)
    else:
        support = problem.support(problem.size, problem.origin)
    if problem.boundary == "auto":
        choice = _edge_rule(problem, first, support, size_scores)
    else:
        design = Design(support, tuple(region(shape, support, "same", problem.pad_mode)
                                       for shape in in_shapes), problem.pad_mode,
                        problem.boundary)
        choice = Choice(design, size_scores=size_scores)
    if problem.size == "auto" and first.support.shape != search_extent(problem)[1]:
        choice = dataclasses.replace(choice, size_limit=first.support.shape)
    return choice


def _full_mode_rule(problem, first):
    """'full' mode: every sample depends on the edge rule; the rule whose fit leaves the
    smallest residual wins."""
    support = first.support
    scores, designs = {}, {}
    for rule in RULES:
        design = Design(support, first.boxes, BOUNDARIES[rule], rule)
        stats = statistics_for(problem, first if BOUNDARIES[rule] == first.pad_mode else None,
                               design)
        fit = SubFit(problem, stats, support)
        scores[rule] = float(np.sqrt(fit.total_rss(_scale(stats)) / max(fit.n, 1)))
        designs[rule] = design
    best = min(scores, key=scores.get)
    return Choice(designs[best], boundary_scores=scores)


def _edge_rule(problem, first, support, size_scores):
    """Fit the interior, then find the edge rule that reproduces the border samples."""
    in_shapes = [pair.in_shape for pair in problem.pairs]
    interior = tuple(region(shape, support, "same", None) for shape in in_shapes)
    interior_design = Design(support, interior, None, None)
    fit = SubFit(problem, statistics_for(problem, first, interior_design), support)
    kernel, bias = fit.kernel()
    scale = _scale(fit.stats)
    noise = float(np.sqrt(fit.total_rss(scale) / max(fit.n, 1)))
    operator = Operator(support.shape, problem.layout, problem.n_in, problem.n_out)
    scores = {}
    for rule in RULES + ("unchanged",):
        squared, count = 0.0, 0
        for pair, inside in zip(problem.pairs, interior):
            if rule == "unchanged" and pair.in_shape != pair.out_shape or (
                    rule == "unchanged" and pair.input.shape[-1] != pair.output.shape[-1]):
                count = -1
                break
            everything = Box((0,) * problem.n_spatial, pair.out_shape)
            for piece in (everything.minus(inside) if not inside.empty else [everything]):
                if piece.empty:
                    continue
                block = pair.block(support, piece, None if rule == "unchanged" else
                                   BOUNDARIES[rule], problem.fillvalue, problem.dtype)
                if rule == "unchanged":
                    predicted = pair.input.read(piece.slices() + (slice(None),))[np.newaxis]
                else:
                    predicted = operator.on(block.extended).forward(kernel)
                    if problem.bias:
                        predicted = predicted + bias
                residual = block.target - predicted
                if block.weight is not None:  # on the interior's (weighted) scale
                    residual = residual * np.sqrt(block.weight)
                residual = residual[block.usable]
                squared += float(np.sum(np.abs(residual) ** 2))
                count += residual.size
        if count > 0:
            scores[rule] = float(np.sqrt(squared / count))
    if not scores:
        return Choice(interior_design, size_scores=size_scores, boundary_scores=scores)
    best = min(scores, key=scores.get)
    if scores[best] > 1.5 * noise + 1e-9 * scale:
        return Choice(interior_design, size_scores=size_scores, boundary_scores=scores,
                      boundary_noise=noise)
    if best == "unchanged":
        # The filter left a frame as it was (Pillow's Kernel filters do, as wide as their
        # nominal kernel): fit without it, however small the kernel found inside it.
        changed = [_changed(pair) for pair in problem.pairs]
        boxes = tuple(inside.intersect(box) for box, inside in zip(changed, interior))
        frame = tuple((min(box.start[axis] for box in changed),
                       min(shape[axis] - box.stop[axis]
                           for box, shape in zip(changed, in_shapes)))
                      for axis in range(problem.n_spatial))
        return Choice(Design(support, boxes, None, None), size_scores=size_scores,
                      boundary_scores=scores, frame=frame)
    design = Design(support, tuple(region(shape, support, "same", BOUNDARIES[best])
                                   for shape in in_shapes), BOUNDARIES[best], best)
    return Choice(design, size_scores=size_scores, boundary_scores=scores)


def _changed(pair):
    """The box of output samples inside the frame, at each edge, where the output equals
    the input (read a slice at a time from each edge until they differ)."""
    shape = pair.out_shape
    start, stop = [0] * len(shape), list(shape)
    for axis, n in enumerate(shape):
        for high in (False, True):
            width = 0
            for i in (range(n - 1, -1, -1) if high else range(n)):
                index = [slice(None)] * (len(shape) + 1)
                index[axis] = slice(i, i + 1)
                if not np.array_equal(pair.input.read(tuple(index)),
                                      pair.output.read(tuple(index))):
                    break
                width += 1
            if width >= n:
                break
            if high:
                stop[axis] = n - width
            else:
                start[axis] = width
    return Box(tuple(start), tuple(stop))


# --- evidence against the chosen placement -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class Placement:
    """A fit on the first pass's samples that explains the output far better than the
    chosen one: its support, both residual RMS values, and whether it fits exactly (to
    the precision of the statistics)."""

    support: Support
    rms: float
    chosen_rms: float
    same_size: bool
    exact: bool


def better_placement(problem, first, support, factor=4.0):
    """Whether a larger support, or another placement of the same size, inside the first
    pass's evidence box explains the output far better than `support` on the same samples:
    a residual sum of squares smaller by `factor`, and significantly so (an F-test of the
    nested fits, so that few samples and many unknowns cannot pass). None if not, or if the
    first pass gathered no evidence."""
    import scipy.stats

    box, stats = first.evidence_support, first.evidence
    if box is None or not box.contains(support):
        return None
    scale = _scale(stats)
    chosen = fit_of(problem, first, support, "evidence")
    whole = fit_of(problem, first, box, "evidence")
    if not all(f.full_rank for f in whole.factors) or whole.n < 2 * whole.p:
        return None
    chosen_rss, whole_rss = chosen.total_rss(scale), whole.total_rss(scale)
    if whole_rss * factor >= chosen_rss:
        return None
    extra, dof = whole.p - chosen.p, whole.n - whole.p
    statistic = ((chosen_rss - whole_rss) / extra) / (whole_rss / dof)
    if scipy.stats.f.sf(statistic, extra, dof) >= 1e-6:
        return None

    def placement(fit, same_size):
        return Placement(fit.support, float(np.sqrt(fit.total_rss(scale) / max(fit.n, 1))),
                         float(np.sqrt(chosen_rss / max(chosen.n, 1))), same_size,
                         fit.total_rss(scale) <= fit.floor(scale))

    others = [fit_of(problem, first, s, "evidence")
              for s in candidate_supports(box, support.shape) if s != support]
    best = min(others, key=lambda f: f.total_rss(scale), default=None)
    if best is not None and best.total_rss(scale) * factor < chosen_rss:
        return placement(best, True)
    return placement(whole, False)
