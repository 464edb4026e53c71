"""Reverse-engineering an unknown filter: its size, anchor and edge rule, and model checks.

size='auto' and origin='auto' fit a generous support, locate the kernel inside it, and score
candidate supports by BIC on the same samples; boundary='auto' fits the interior and asks which
edge rule reproduces the border. The checks warn when a linear, shift-invariant model is wrong.
"""

# scipy.stats is imported inside the functions that use them: `import kernelfit` stays fast.

import itertools
import warnings

import numpy as np

from ._convolve import interior
from ._result import IdentifiabilityWarning
from ._validation import saturation_limits

RULES = ("fill", "edge", "wrap", "symmetric", "reflect")


class ModelWarning(UserWarning):
    """The data contradict the model: the filter is not linear, or not shift-invariant."""


# --- helpers over one or several pairs ------------------------------------------------------

def _pairs(input, output, mask):
    several = isinstance(input, (list, tuple)) and input and all(
        isinstance(item, np.ndarray) for item in input)
    if several:
        masks = mask if mask is not None else [None] * len(input)
        return list(input), list(output), list(masks), True
    return [input], [output], [mask], False


def _pack(items, several):
    return items if several else items[0]


def _spatial_shape(array, channel_axis):
    shape = np.shape(array)
    if channel_axis is None:
        return shape
    return tuple(n for axis, n in enumerate(shape) if axis != channel_axis % len(shape))


def _with_spatial_mask(user_mask, spatial, output, channel_axis):
    """The user's mask (if any) and a spatial mask, together, shaped for fit_kernel."""
    if user_mask is None:
        return spatial
    user_mask = np.asarray(user_mask)
    if user_mask.ndim == spatial.ndim:
        return user_mask & spatial
    expanded = np.expand_dims(spatial, channel_axis % np.ndim(output))
    return user_mask & expanded


def _interior_mask(shape, size, convention, origin):
    """True at 'same'-mode output samples whose window lies inside the input."""
    mask = np.zeros(shape, dtype=bool)
    mask[interior(shape, size, convention, origin)] = True
    return mask


# --- size and origin ----------------------------------------------------------------------

def locate(fit_kernel, input, output, options, *, size, origin, max_size, channel_axis):
    """Choose the support (and anchor) by BIC; return (size, origin, scores).

    `size` is 'auto' or a tuple; `origin` is 'auto' or the given origin (then only the size
    is searched among centred supports).
    """
    inputs, outputs, masks, several = _pairs(input, output, options.get("mask"))
    spatial = _spatial_shape(inputs[0], channel_axis)
    out_spatial = _spatial_shape(outputs[0], channel_axis)
    if options.get("mode") in ("valid", "full") or out_spatial != spatial:
        # 'valid' and 'full' outputs imply the size; only 'same' needs a search
        implied = tuple(abs(n - m) + 1 for n, m in zip(spatial, out_spatial))
        given = implied if size == "auto" else size
        return given, (0,) * len(spatial), None
    convention = options["convention"]
    bound = tuple(min(max_size, n) for n in spatial)
    bound = tuple(b if b % 2 else b - 1 for b in bound)
    centre = tuple(b // 2 for b in bound)
    # Every candidate is scored on the same samples: the interior of the largest support.
    interiors = [_interior_mask(_spatial_shape(x, channel_axis), bound, "correlation",
                                (0,) * len(bound)) for x in inputs]
    same_samples = [_with_spatial_mask(m, interior, y, channel_axis)
                    for m, interior, y in zip(masks, interiors, outputs)]
    base = dict(lstsq_options(options), convention="correlation", boundary=None,
                mode="same", mask=_pack(same_samples, several))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        big = fit_kernel(input, output, bound, origin=0, **base)
    magnitude = np.abs(big.kernel)
    stderr = np.where(np.isfinite(big.stderr), big.stderr, np.inf)
    # Least squares on rounded integer outputs is biased at about 5e-4 of the peak (the
    # outputs lie on a lattice); exact fits leave 1e-6-level noise. Below these floors a
    # coefficient is not evidence of a larger kernel.
    quantised = any(np.issubdtype(np.asarray(y).dtype, np.integer) for y in outputs)
    floor = (5e-4 if quantised else 1e-6) * float(magnitude.max())
    significant = magnitude > 5 * np.sqrt(stderr ** 2 + floor ** 2)
    while significant.ndim > len(bound):  # a coefficient matters if it does in any channel
        significant = significant.any(axis=-1)
    boxes = _candidate_boxes(significant, centre, bound, size, origin, convention)
    scale = float(np.sqrt(np.mean(np.abs(np.asarray(outputs[0], dtype=complex)) ** 2))) or 1.0
    scores, fits = {}, {}
    best = None
    for start, extent in boxes:
        shape = tuple(extent)
        origin_c = tuple(c - s - e // 2 for c, s, e in zip(centre, start, extent))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentifiabilityWarning)
                candidate = fit_kernel(input, output, shape, origin=origin_c, **base)
        except ValueError:
            continue
        score = _bic(candidate, scale)
        user_origin = origin_c if convention == "correlation" else tuple(-o for o in origin_c)
        scores[(shape, user_origin)] = score
        fits[(start, extent)] = candidate
        if best is None or score < best[0] - 1e-9 * abs(best[0]):
            best = (score, shape, user_origin, (start, extent))
    _, shape, user_origin, chosen = best
    if size == "auto" and chosen != boxes[0] and significant.any():
        # BIC on hundreds of thousands of 8-bit samples can reward coefficients that no
        # test finds: keep a larger support only if what it adds is significant.
        core = _core_box(significant, centre)
        if core in fits and not _adds_significant(fits[chosen], chosen, core, floor):
            start, extent = core
            shape = tuple(extent)
            origin_c = tuple(c - s - e // 2 for c, s, e in zip(centre, start, extent))
            user_origin = origin_c if convention == "correlation" else tuple(
                -o for o in origin_c)
    return shape, user_origin, scores


def _core_box(significant, centre):
    """The smallest box holding every significant coefficient and the anchor."""
    ndim = significant.ndim
    start, stop = [], []
    for axis in range(ndim):
        hits = np.flatnonzero(significant.any(axis=tuple(a for a in range(ndim) if a != axis)))
        start.append(min(int(hits[0]), centre[axis]))
        stop.append(max(int(hits[-1]), centre[axis]))
    return tuple(start), tuple(b - a + 1 for a, b in zip(start, stop))


def _adds_significant(fit, box, core, floor):
    """Whether the coefficients of `fit` (over `box`) outside `core` are, together, nonzero.

    A joint chi-square test: a Gaussian's faint tails are each within 2 stderr of zero,
    yet dozens of them together are not noise.
    """
    (start, extent), (core_start, core_extent) = box, core
    outside = np.ones(tuple(extent), dtype=bool)
    outside[tuple(slice(c - s, c - s + e) for s, c, e in
                  zip(start, core_start, core_extent))] = False
    kernel, stderr = np.abs(fit.kernel), fit.stderr
    while kernel.ndim > outside.ndim:  # every channel's coefficients count
        outside = outside[..., np.newaxis]
    outside = np.broadcast_to(outside, kernel.shape)
    usable = outside & np.isfinite(stderr)
    if not usable.any():
        return False
    import scipy.stats

    chi2 = float(np.sum(kernel[usable] ** 2 / (stderr[usable] ** 2 + floor ** 2)))
    return bool(scipy.stats.chi2.sf(chi2, int(usable.sum())) < 1e-6)


def _candidate_boxes(significant, centre, bound, size, origin, convention):
    """(start, extent) boxes inside the big support that contain its anchor."""
    ndim = len(bound)
    boxes = set()
    if size == "auto":
        if significant.any():
            core_start, core_extent = _core_box(significant, centre)
            low = list(core_start)
            high = [a + e - 1 for a, e in zip(core_start, core_extent)]
        else:
            low, high = list(centre), list(centre)
        # the box of significant coefficients, and one sample more on any side
        for grow in itertools.product(*[[(0, 0), (1, 0), (0, 1)]] * ndim):
            start = tuple(max(lo - g[0], 0) for lo, g in zip(low, grow))
            stop = tuple(min(hi + g[1], b - 1) for hi, g, b in zip(high, grow, bound))
            boxes.add((start, tuple(e - s + 1 for s, e in zip(start, stop))))
        # and the centred odd squares, for a table of scores by size
        for k in range(1, min(bound) + 1, 2):
            boxes.add((tuple(c - k // 2 for c in centre), (k,) * ndim))
    else:  # the given size, at every placement that holds the anchor
        for start in itertools.product(*[range(max(c - k + 1, 0), min(c, b - k) + 1)
                                         for c, k, b in zip(centre, size, bound)]):
            boxes.add((tuple(start), tuple(size)))
    return sorted(boxes, key=lambda box: (np.prod(box[1]), box))


def _bic(fit, scale):
    """Bayesian information criterion of a least-squares fit: n ln(RSS / n) + p ln n.

    An exact fit leaves only floating-point rounding, which must not rank the candidates
    that contain the kernel: the residual has a floor of 1e-10 of the output's scale.
    """
    n = fit.n_equations
    rss = max(fit.residual_rms ** 2, (1e-10 * scale) ** 2) * n
    return float(n * np.log(rss / n) + fit.n_unknowns * np.log(n))


# --- edge rule ----------------------------------------------------------------------------

def choose_boundary(fit_kernel, input, output, options, *, size, origin, channel_axis):
    """Fit the interior, then find the edge rule that reproduces the border samples.

    Returns (fit, scores): the refitted kernel under the chosen rule (or the interior fit
    when none reproduces the border) and the border residual RMS of each rule.
    """
    inputs, outputs, masks, several = _pairs(input, output, options.get("mask"))
    base = dict(options)
    interior = fit_kernel(input, output, size, boundary=None, origin=origin, **base)
    if interior.mode == "valid":  # no sample depends on the edge rule
        return interior, {}
    if interior.mode == "full":  # every sample depends on the rule: compare full fits
        fits = {}
        for rule in RULES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IdentifiabilityWarning)
                fits[rule] = fit_kernel(input, output, size, boundary=rule, origin=origin,
                                        **base)
        scores = {rule: fit.residual_rms for rule, fit in fits.items()}
        return fits[min(scores, key=scores.get)], scores
    noise = interior.residual_rms
    scores = {}
    for rule in RULES + ("unchanged",):
        squared, count = 0.0, 0
        for x, y, m in zip(inputs, outputs, masks):
            x, y = np.asarray(x), np.asarray(y)
            if rule == "unchanged":
                if x.shape != y.shape:
                    break
                predicted = x.astype(np.result_type(x, float))
            else:
                predicted = interior.predict(x, boundary=rule)
            border = ~_interior_mask(_spatial_shape(x, channel_axis), size,
                                     interior.convention, interior.origin)
            if channel_axis is not None and y.ndim == x.ndim:
                border = np.expand_dims(border, channel_axis % y.ndim)
            used = np.broadcast_to(border, y.shape) & _usable(y, m, options)
            residual = (y.astype(np.result_type(y, float)) - predicted)[used]
            squared += float(np.sum(np.abs(residual) ** 2))
            count += residual.size
        else:
            if count:
                scores[rule] = float(np.sqrt(squared / count))
    if not scores:
        return interior, scores
    best = min(scores, key=scores.get)
    scale = float(np.nanmax(np.abs(np.asarray(outputs[0], dtype=float)))) or 1.0
    if scores[best] > 1.5 * noise + 1e-9 * scale:
        warnings.warn(
            f"no edge rule reproduces the output's border samples: the best, {best!r}, leaves "
            f"a border residual RMS of {scores[best]:.3g} against {noise:.3g} inside; the "
            f"kernel is fitted from the interior only (boundary=None)", ModelWarning,
            stacklevel=3)
        return interior, scores
    if best == "unchanged":
        # The filter left a frame as it was (Pillow's Kernel filters do, as wide as their
        # nominal kernel): fit without it, however small the kernel found inside it.
        frames = [_unchanged_frame(np.asarray(x), np.asarray(y), channel_axis)
                  for x, y in zip(inputs, outputs)]
        framed = [_with_spatial_mask(m, frame, y, channel_axis)
                  for m, frame, y in zip(masks, frames, outputs)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentifiabilityWarning)
            refit = fit_kernel(input, output, size, boundary=None, origin=origin,
                               **dict(base, mask=_pack(framed, several)))
        return refit, scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        refit = fit_kernel(input, output, size, boundary=best, origin=origin, **base)
    return refit, scores


def _unchanged_frame(x, y, channel_axis):
    """False on the rows and columns at each edge where the output equals the input."""
    if channel_axis is not None:
        x, y = np.moveaxis(x, channel_axis, -1), np.moveaxis(y, channel_axis, -1)
    spatial = x.shape if channel_axis is None else x.shape[:-1]
    keep = np.ones(spatial, dtype=bool)
    for axis, n in enumerate(spatial):
        for ends in (range(n), range(n - 1, -1, -1)):
            width = 0
            for i in ends:
                if not np.array_equal(np.take(x, i, axis=axis), np.take(y, i, axis=axis)):
                    break
                width += 1
            if width >= n:
                break
            index = [slice(None)] * len(spatial)
            index[axis] = (slice(0, width) if ends.start == 0 else slice(n - width, n))
            keep[tuple(index)] = False
    return keep


def _usable(y, mask, options):
    """Output samples a fit with these options uses: the mask, less clipped samples."""
    y = np.asarray(y)
    usable = np.ones(y.shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        usable &= mask if mask.shape == usable.shape else np.broadcast_to(
            np.expand_dims(mask, -1) if options.get("channel_axis") is not None else mask,
            usable.shape)
    limits = saturation_limits(options.get("saturated", "auto"), y)
    if limits is not None:
        usable &= (y > limits[0]) & (y < limits[1])
    return usable


# --- model checks -------------------------------------------------------------------------

# Samples per band of the data that the checks fit again: bounded, whatever the image size.
CHECK_SAMPLES = 1 << 19


def check_model(fit_kernel, fit, input, output, options):
    """Warn when the residual shows a nonlinear filter, or bands of the data disagree.

    The checks use a top and a bottom band of rows of every pair (the halves of small
    images), each fitted again on its interior, so their cost and memory stay bounded.
    """
    if fit.mode == "full":
        return  # every output sample depends on the edge rule: no interior to compare
    inputs, outputs, masks, several = _pairs(input, output, options.get("mask"))
    channel_axis = options.get("channel_axis")
    bands = [[], []]
    for x, y, m in zip(inputs, outputs, masks):
        for band, part in zip(bands, _split_rows(np.asarray(x), np.asarray(y), m, fit,
                                                 channel_axis)):
            band.append(part)
    # Least-squares fits of each band judge the data, whatever estimator `fit` used.
    band_fits = _fit_bands(fit_kernel, fit, bands, options)
    if band_fits is None:
        return
    _check_linearity(band_fits, bands, options)
    _check_shift_invariance(fit, band_fits)


def _split_rows(x, y, mask, fit, channel_axis):
    """A top and a bottom band of rows: (input, output, mask) each, read from the arrays."""
    x_axis = 0 if channel_axis is None or channel_axis % np.ndim(x) != 0 else 1
    y_axis = 0 if channel_axis is None or np.ndim(y) < np.ndim(x) \
        or channel_axis % np.ndim(y) != 0 else 1
    rows = np.shape(x)[x_axis]
    per_row = max(1, int(np.prod(np.shape(x))) // rows)
    height = max(2 * fit.size[0] + 8, CHECK_SAMPLES // per_row)
    cut = fit.size[0] - 1 if fit.mode == "valid" else 0  # output rows the band explains
    if 2 * height >= rows:
        spans = [(0, rows // 2), (rows // 2, rows)]
    else:
        spans = [(0, height), (rows - height, rows)]
    parts = []
    for start, stop in spans:
        def take(array, axis, first, last):
            index = [slice(None)] * np.ndim(array)
            index[axis] = slice(first, last)
            return np.asarray(array[tuple(index)])
        band_mask = None if mask is None else take(mask, y_axis, start, stop - cut)
        parts.append((take(x, x_axis, start, stop), take(y, y_axis, start, stop - cut),
                      band_mask))
    return parts


def _interior_residuals(fit, x, y, mask, options):
    """Predicted values and residuals of the samples that do not depend on the edge rule."""
    predicted = fit.predict(x)
    used = np.isfinite(predicted) & _usable(y, mask, options)
    if fit.mode == "same":
        spatial = _interior_mask(predicted.shape if predicted.ndim == len(fit.size) else
                                 _spatial_shape(predicted, fit.channel_axis), fit.size,
                                 fit.convention, fit.origin)
        if predicted.ndim > len(fit.size):
            spatial = np.expand_dims(spatial, fit.channel_axis % predicted.ndim)
        used &= np.broadcast_to(spatial, used.shape)
    return predicted[used], y.astype(np.result_type(y, float))[used] - predicted[used]


def _fit_bands(fit_kernel, fit, bands, options):
    """The kernel fitted again, by least squares, on each band's interior (or None)."""
    fits = []
    for band in bands:
        several = len(band) > 1
        masks = [m for _, _, m in band]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(fit_kernel(
                    _pack([x for x, _, _ in band], several),
                    _pack([y for _, y, _ in band], several), fit.size,
                    **dict(lstsq_options(options), mode=fit.mode, boundary=None,
                           origin=fit.origin,
                           mask=_pack(masks, several) if any(m is not None for m in masks)
                           else None)))
        except ValueError:
            return None
    return fits


def _check_linearity(band_fits, bands, options):
    pieces = [_interior_residuals(band_fit, x, y, m, options)
              for band_fit, band in zip(band_fits, bands) for x, y, m in band]
    fit = band_fits[0]
    p = np.concatenate([piece[0] for piece in pieces])
    r = np.concatenate([piece[1] for piece in pieces])
    if p.size < 50 or np.ptp(np.abs(p)) == 0:
        return
    if np.sqrt(np.mean(np.abs(r) ** 2)) <= 1e-9 * np.sqrt(np.mean(np.abs(p) ** 2)):
        return  # an exact fit: what is left is floating-point rounding
    offset = r.mean()
    missing_offset = fit.bias is None and abs(offset) > 5 * r.std() / np.sqrt(r.size) \
        and abs(offset) > 0.01 * np.sqrt(np.mean(np.abs(p) ** 2))
    curved = False
    import scipy.stats

    if not (np.iscomplexobj(p) or np.iscomplexobj(r)):  # tone curves act on real levels
        # What a quadratic and a cubic in the predicted level explain beyond a constant and
        # a straight line (a partial F-test, ~ chi-square with 2 dof when the filter is linear)
        z = (p - p.mean()) / p.std()
        straight = np.stack([np.ones_like(z), z], axis=1)
        curve = np.concatenate([straight, np.stack([z ** 2, z ** 3], axis=1)], axis=1)
        rss_straight = _rss(straight, r)
        fraction = (rss_straight - _rss(curve, r)) / rss_straight if rss_straight > 0 else 0.0
        curved = fraction > 0.02 and scipy.stats.chi2.sf(fraction * p.size, 2) < 1e-6
    if curved:
        warnings.warn(
            f"the residual depends on the output level: a curve in the predicted value "
            f"explains {fraction:.0%} of it, so the filter is not linear in the input (gamma "
            f"or sRGB processing, a tone curve, clipping, or rounding between passes). "
            f"Linearise both images first (for sRGB, undo its transfer curve), or fit a "
            f"narrower range of levels with mask="
            + (f"; it also adds an offset ({offset:.3g}): bias=True." if missing_offset
               else "."), ModelWarning, stacklevel=4)
    elif missing_offset:
        warnings.warn(
            f"the residual has a mean of {offset:.3g}: the filter adds an offset the model "
            f"lacks (as Pillow's EMBOSS adds 128). Fit it with bias=True.", ModelWarning,
            stacklevel=4)


def _rss(design, values):
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return float(np.sum((values - design @ coefficients) ** 2))


def _check_shift_invariance(fit, halves):
    import scipy.stats

    first, second = halves
    if not (first.identifiable and second.identifiable):
        return
    if min(first.n_equations, second.n_equations) < 20 * first.n_unknowns:
        return
    variance = first.stderr ** 2 + second.stderr ** 2
    usable = np.isfinite(variance) & (variance > 0)
    difference = np.abs(first.kernel - second.kernel)
    chi2 = float(np.sum(difference[usable] ** 2 / variance[usable]))
    dof = int(usable.sum())
    scale = np.abs(fit.kernel).max() or 1.0
    if dof and scipy.stats.chi2.sf(chi2, dof) < 1e-6 and difference.max() > 0.02 * scale:
        warnings.warn(
            f"kernels fitted on the top and bottom of the image differ by up to "
            f"{difference.max():.3g} ({difference.max() / scale:.0%} of the largest "
            f"coefficient), far beyond their standard errors: the filter is not "
            f"shift-invariant (vignetting, a spatially varying blur, a local tone map). Fit "
            f"regions separately with mask=, or a smaller region of interest.",
            ModelWarning, stacklevel=4)


def lstsq_options(options):
    """The same fit by exact least squares: searches and checks need no other solver."""
    cleared = dict.fromkeys(("reg", "rcond", "optimizer", "learning_rate", "max_steps", "rtol",
                             "gtol", "dtype", "seed", "batch_size", "verbose", "callback"))
    return dict(options, method="lstsq", **cleared)
