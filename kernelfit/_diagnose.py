"""Diagnose: what the fit's own numbers say about the model, as warnings that name the cause.

Identifiability comes from the solve; a better placement or size from sub-blocks of the first
pass; shift-invariance from the per-band statistics; linearity from the residual pass's
moments. Nothing here reads the pixels.
"""

# scipy.stats is imported where it is used: `import kernelfit` stays fast.

import dataclasses
import warnings

import numpy as np

from ._search import SAMPLES_PER_UNKNOWN, better_placement, fit_of, search_extent
from ._warnings import IdentifiabilityWarning, ModelWarning

# fit_kernel -> diagnose -> a check -> _warn -> warnings.warn: the warning points at the
# caller of fit_kernel.
STACKLEVEL = 5


def _warn(message, category):
    warnings.warn(message, category, stacklevel=STACKLEVEL)


def diagnose(problem, first, choice, estimate, fit):
    """Warn about everything the data say is wrong with the fit `fit`."""
    _identifiability(fit)
    _boundary(choice)
    _size_limit(problem, first, choice)
    if not problem.checks:
        return
    _determined(fit)
    # A kernel too small or misplaced, or a non-linear filter, leaves a best linear kernel
    # that differs between regions: the shift-invariance test would blame the wrong cause.
    if problem.mode == "same" and problem.size != "auto" and problem.origin != "auto" \
            and _placement(problem, first, choice):
        return
    if _absorbed_offset(problem, first, choice, fit):
        return
    structure = _structure(problem, first, estimate, fit)
    if fit.compression is not None:  # the residual's cause, found: no other to blame
        _compressed(fit, structure)
        return
    if _linearity(problem, first, estimate, fit, structure):
        return
    # Kernels that differ between the top and the bottom explain a shift-variant filter;
    # a non-linear filter's residual (structured, not noise) makes them differ too, by
    # little of what is left: the share they explain tells the two apart.
    bands = _bands(problem, first, choice, fit)
    if bands is not None and bands.differ and (structure is None
                                               or bands.explained >= SHIFT_VARIANT_SHARE):
        _shift_invariance(bands)
    elif structure is not None:
        _not_noise(structure)


# Above this condition number, standard errors as large as every coefficient come from the
# input's lack of texture (not from a large residual, which the model checks explain).
ILL_CONDITIONED = 1e6


def _determined(fit):
    """A full-rank fit so ill-conditioned that no coefficient stands out of its errors."""
    stderr = np.asarray(fit.stderr)
    if fit.identifiable and fit.condition_number > ILL_CONDITIONED and \
            np.all(fit.negligible) and np.any(stderr > 0):
        _warn(f"no coefficient of the kernel differs from zero by more than 3 standard "
              f"errors (the largest is {np.nanmax(stderr):.3g}; condition number "
              f"{fit.condition_number:.3g}): the data do not determine this kernel, although "
              f"it is identifiable in principle. A more textured image, more pairs, a "
              f"smaller size, or method='ridge' would help.", IdentifiabilityWarning)


def _identifiability(fit):
    if fit.identifiable:
        return
    advice = ("a larger or more textured image, more pairs" if fit.n_equations
              >= fit.n_unknowns else "more output samples (a larger image, more pairs)")
    _warn(f"the data determine only {fit.rank} independent combinations of the "
          f"{fit.n_unknowns} unknowns ({fit.n_equations} equations): the kernel is not "
          f"identifiable and the minimum-norm solution is returned. {advice.capitalize()} "
          f"or a smaller size would help.", IdentifiabilityWarning)


def _boundary(choice):
    if choice.boundary_noise is None:
        return
    scores = choice.boundary_scores
    best = min(scores, key=scores.get)
    _warn(f"no edge rule reproduces the output's border samples: the best, {best!r}, "
          f"leaves a border residual RMS of {scores[best]:.3g} against "
          f"{choice.boundary_noise:.3g} inside; the kernel is fitted from the interior only "
          f"(boundary=None)", ModelWarning)


def _size_limit(problem, first, choice):
    """size='auto' found a kernel that reaches the edge of a search the data cut short of
    `max_size`: a larger kernel could not be looked for."""
    if choice.size_limit is None:
        return
    box, support = first.support, choice.design.support
    asked = search_extent(problem)[1]
    if not any(e < a and (lo == low or hi == high) for e, a, lo, low, hi, high in zip(
            box.shape, asked, support.lo, box.lo, support.hi, box.hi)):
        return
    _warn(f"the kernel found, {_size(support, False)}, reaches the edge of the largest "
          f"support the data allow size='auto' to search, {_size(box, False)} (max_size="
          f"{problem.max_size}): a larger one would leave fewer than {SAMPLES_PER_UNKNOWN} "
          f"output samples per unknown, or span over half the data, so the kernel may be "
          f"larger than found. A larger image or more pairs would tell.", ModelWarning)


def _placement(problem, first, choice):
    """A kernel of the given size, placed elsewhere or larger, explains far more. True if
    it warned."""
    support = choice.design.support
    found = better_placement(problem, first, support)
    if found is None:
        return False
    convention = problem.convention
    explains = ("fits the output exactly" if found.exact else
                f"leaves a residual RMS of {found.rms:.3g}")
    if found.same_size:
        origin = found.support.origin(convention)
        _warn(f"the kernel is misplaced: at origin {origin} a {_size(support)} kernel "
              f"{explains}, against a residual RMS of {found.chosen_rms:.3g} at "
              f"origin {support.origin(convention)} (a causal filter, or a library that "
              f"anchors kernels elsewhere). Pass origin={origin}, or origin='auto'.",
              ModelWarning)
    else:
        _warn(f"the kernel is larger than size={_size(support, False)}: a "
              f"{_size(found.support, False)} support {explains}, against a residual RMS of "
              f"{found.chosen_rms:.3g}. Pass a larger size, or size='auto'.", ModelWarning)
    return True


def _size(support, taps=True):
    if support.ndim == 1 and taps:
        return f"{support.shape[0]}-tap"
    return "x".join(map(str, support.shape))


@dataclasses.dataclass(frozen=True)
class Bands:
    """Kernels fitted to the top and the bottom half of the rows, against one kernel for
    both: whether they differ (a Chow test that separate kernels explain more, a difference
    that matters, 2% of the largest coefficient, and one coefficient that differs by over 5
    standard errors), by how much, and what share of the residual they explain."""

    differ: bool
    difference: float
    peak: float
    explained: float


def _bands(problem, first, choice, fit):
    """The `Bands` evidence from the per-band statistics, or None where there is none."""
    import scipy.stats

    support = choice.design.support
    if problem.mode == "full" or not first.support.contains(support):
        return None
    halves = [fit_of(problem, first, support, which) for which in ("top", "bottom")]
    pooled = fit_of(problem, first, support)
    if any(h.n == 0 for h in halves) or not all(
            f.full_rank for h in halves + [pooled] for f in h.factors):
        return None
    p, n = pooled.p, pooled.n
    if min(h.n for h in halves) < 20 * p:
        return None
    scale = float(np.sqrt(pooled.yy / max(n, 1))) or 1.0
    separate = sum(h.total_rss(scale) for h in halves)
    together = pooled.total_rss(scale)
    gained = max(together - separate, 0.0)
    statistic = (gained / p) / (separate / max(n - 2 * p, 1))
    first_kernel, second_kernel = (h.kernel()[0] for h in halves)
    difference = np.abs(first_kernel - second_kernel)
    # each half has about its share of the samples: its variance scales by n / n_half
    spread = pooled.stderr(scale) * np.sqrt(sum(n / h.n for h in halves))
    peak = float(np.abs(fit.kernel).max()) or 1.0
    strongest = float(np.nanmax(difference / np.where(spread > 0, spread, np.inf)))
    differ = scipy.stats.f.sf(statistic, p, max(n - 2 * p, 1)) < 1e-6 and strongest > 5 \
        and difference.max() > 0.02 * peak
    return Bands(bool(differ), float(difference.max()), peak,
                 gained / together if together > 0 else 0.0)


def _shift_invariance(bands):
    _warn(f"kernels fitted on the top and bottom of the image differ by up to "
          f"{bands.difference:.3g} ({bands.difference / bands.peak:.0%} of the largest "
          f"coefficient), far beyond their standard errors, and explain "
          f"{bands.explained:.0%} of the residual between them: the filter is not "
          f"shift-invariant (vignetting, a spatially varying blur, a local tone map). Fit "
          f"regions separately with mask=, or a smaller region of interest.", ModelWarning)


def _linearity(problem, first, estimate, fit, structure=None):
    """The residual against a cubic in the predicted level (a partial F-test), and its mean
    when the model has no offset, from the residual pass's moments. True if it curves or
    has an offset the model lacks (each warned about: the cause to fix first). A slight
    curve in a residual that follows the local contrast (`structure`) is left to that
    diagnosis: an edge-aware filter, not a tone curve."""
    import scipy.stats

    moments = estimate.moments
    if moments is None or moments.n < 50 or moments.high - moments.low <= 0:
        return False  # (low and high: of the predicted level, or its modulus if complex)
    n = moments.n
    rms_r = np.sqrt(moments.sum_r2 / n)
    rms_p = np.sqrt(moments.sum_p2 / n)
    if rms_r <= 1e-9 * rms_p or rms_r <= _precision_floor(problem, first, fit, rms_p):
        return False  # an exact fit: what is left is rounding, of the arithmetic or the data
    offset = moments.sum_r / n
    spread = np.sqrt(max(moments.sum_r2 / n - abs(offset) ** 2, 0.0))
    missing_offset = fit.bias is None and abs(offset) > 5 * spread / np.sqrt(n) \
        and abs(offset) > 0.01 * rms_p
    curved = False
    if moments.real:
        # What a quadratic and a cubic in the predicted value explain beyond a constant and
        # a straight line (~ chi-square with 2 dof when the filter is linear)
        straight = moments.rss(2)
        fraction = (straight - moments.rss(4)) / straight if straight > 0 else 0.0
        curved = fraction > 0.02 and scipy.stats.chi2.sf(fraction * moments.n_regressed,
                                                          2) < 1e-6
        if curved and fraction < 0.1 and structure is not None and structure.contrast >= 0.2:
            curved = False  # an edge-aware filter's residual, a little level-dependent too
    if curved:
        _warn(f"the residual depends on the output level: a curve in the predicted value "
              f"explains {fraction:.0%} of it, so the filter is not linear in the input (gamma "
              f"or sRGB processing, a tone curve, clipping, or rounding between passes). "
              f"Linearise both images first (for sRGB, undo its transfer curve), or fit a "
              f"narrower range of levels with mask="
              + (f"; it also adds an offset ({offset:.3g}): bias=True." if missing_offset
                 else "."), ModelWarning)
    elif missing_offset:
        _warn(f"the residual has a mean of {offset:.3g}: the filter adds an offset the model "
              f"lacks (as Pillow's EMBOSS adds 128). Fit it with bias=True.", ModelWarning)
    return curved or missing_offset


def _absorbed_offset(problem, first, choice, fit):
    """size='auto' without a bias: a larger kernel whose sum is a little off can stand in
    for an offset (an integer filter that rounds down between passes subtracts about half
    a level per pass). True, warned, when a smaller support with a bias explains the output
    better by BIC on the same samples."""
    from ._search import _scale, locate

    if problem.size != "auto" or problem.bias or problem.mode != "same" or \
            not first.support.contains(choice.design.support):
        return False
    support, _ = locate(problem, first, bias=True)
    chosen = choice.design.support
    if support.size >= chosen.size:
        return False
    scale = _scale(first.total)
    with_offset = fit_of(problem, first, support, bias=True)
    without = fit_of(problem, first, chosen)
    if with_offset.bic(scale) >= without.bic(scale):
        return False
    _, offset = with_offset.kernel()
    offset = np.ravel(offset)
    shown = f"{offset[0]:.3g}" if offset.size == 1 else np.array2string(offset, precision=3)
    _warn(f"a {_size(support, False)} kernel with an offset of {shown} explains the output "
          f"better than the {_size(chosen, False)} kernel found, whose extra taps stand in "
          f"for the offset: the filter adds one (integer filters that round down between "
          f"passes do, as scipy.ndimage's on uint8). Fit it with bias=True.", ModelWarning)
    return True


# Separate kernels for the top and the bottom of the image explain at least this share of the
# residual of a shift-variant filter (a blur that changes down the image: 30-60%), and less of
# a non-linear one's (a median, a bilateral filter, JPEG: a few %).
SHIFT_VARIANT_SHARE = 0.15


@dataclasses.dataclass(frozen=True)
class Structure:
    """A residual that is not noise: the correlation of its square with the local contrast
    of the output, and of neighbouring residuals (both about 0 for noise, whatever its
    level), its RMS and what the data's precision leaves."""

    contrast: float
    neighbour: float
    rms: float
    floor: float
    integers: bool


def _structure(problem, first, estimate, fit):
    """The `Structure` of the residual when it is well above the data's precision and
    clearly not noise (correlations over 0.1 and 6 standard errors); else None."""
    moments = estimate.moments
    found = None if moments is None or moments.n == 0 or problem.method != "lstsq" else \
        moments.structure()  # (a regularised fit's residual has structure by design)
    if found is None:
        return None
    contrast, neighbour, n = found
    mean = abs(moments.sum_r / moments.n)  # (an offset the model lacks is reported apart)
    rms_r = float(np.sqrt(max(moments.sum_r2 / moments.n - mean ** 2, 0.0)))
    rms_p = float(np.sqrt(moments.sum_p2 / moments.n))
    floor = max(problem.output_rounding, _precision_floor(problem, first, fit, rms_p))
    strongest = max(contrast, abs(neighbour))
    if rms_r <= 2 * floor or rms_r <= 1e-9 * rms_p or strongest < 0.1 or \
            strongest * np.sqrt(n) < 6:
        return None
    return Structure(contrast, neighbour, rms_r, floor, problem.output_rounding > 0)


def _not_noise(structure):
    above = (f", {structure.rms / structure.floor:.0f} times what rounding to integers "
             f"leaves ({structure.floor:.3g})" if structure.integers else "")
    signs = [f"its size follows the output's local contrast (correlation "
             f"{structure.contrast:.2f})"] if structure.contrast >= 0.1 else []
    if abs(structure.neighbour) >= 0.1:
        agree = "agree" if structure.neighbour > 0 else "alternate"
        signs.append(f"neighbouring residuals {agree} (correlation "
                     f"{structure.neighbour:.2f})")
    _warn(f"the residual (RMS {structure.rms:.3g}{above}) is not noise: {' and '.join(signs)}."
          f" No kernel reproduces "
          f"this output: a non-linear filter (median, bilateral, other rank or edge-aware "
          f"filters), lossy compression (JPEG), rounding inside the filter, or a filter that "
          f"varies across the image. The kernel is the best linear approximation.",
          ModelWarning)


def _compressed(fit, structure):
    """The output was saved as JPEG after the filter: say so, and what it means."""
    c = fit.compression
    searched = c.get("searched")
    size = "x".join(map(str, fit.size))
    _warn(f"the output was compressed after the filter ({c['format']}): the residual (RMS "
          f"{fit.residual_rms:.3g}) jumps across {c['block']}x{c['block']} block edges "
          f"(blocks starting at row {c['rows']}, column {c['columns']} modulo {c['block']}; "
          f"{c['jumps'][0]:.2f}x and {c['jumps'][1]:.2f}x the median jump)"
          + (" and follows the content" if structure is not None else "")
          + ". The kernel is the best linear fit up to the compression error"
          + (f"; size='auto' kept {size}, the smallest support that fits within it (the "
             f"search alone found {'x'.join(map(str, searched))}, whose extra coefficients "
             f"model the compression)" if searched else "")
          + (". Its standard errors are clustered by block (the compression error may "
             "correlate within one), but its systematic part is a bias they do not hold"
             if c.get("standard_errors") else ". Its standard errors assume white noise "
             "and are too small for compression error")
          + "; the uncompressed output would give the exact kernel.", ModelWarning)


def _precision_floor(problem, first, fit, rms_p):
    """The residual RMS that the rounding of floating-point data alone can leave: the
    output's own rounding, and the input's carried through the kernel (times 100, for
    rounding inside the filter too). Integer data are exact as given: 0 for them."""
    output = problem.output_precision * rms_p
    stats = first.total
    m = stats.n_kernel
    rows = max(int(stats.n_rows.sum()), 1)
    rms_x = float(np.sqrt(np.real(np.trace(stats.gram[:, :m, :m], axis1=1, axis2=2)).sum()
                          / (m * rows)))
    carried = problem.input_precision * rms_x * float(np.sum(np.abs(fit.kernel)))
    return 100 * (output + carried)
