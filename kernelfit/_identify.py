"""identify: name a kernel (Gaussian, box, Sobel, ...), its separability and its rational form.

Each family proposes a model with fitted parameters; a model matches when the kernel lies
within the fit's standard errors of it (a chi-square test) or, for a bare array, within a
stated tolerance.
"""

# scipy.optimize and scipy.stats are imported inside the functions that use them: `import kernelfit` stays fast.

import dataclasses
import functools
import itertools

import numpy as np

from . import kernels
from ._geometry import anchor, check_origin
from ._result import KernelFit, centre_on_anchor
from ._validation import CONVENTIONS, as_float_array, check_choice, check_scalar

__all__ = ["Identification", "identify"]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One family's best model of the kernel."""

    name: str
    description: str
    parameters: dict
    model: np.ndarray
    score: float        # chi-square per degree of freedom, or max deviation / tolerance
    matches: bool
    n_parameters: int


@dataclasses.dataclass(frozen=True, repr=False)
class Identification:
    """What a kernel is: the best-matching family, separability and a rational form.

    Attributes
    ----------
    name : str
        The family of the best candidate ('gaussian', 'box', 'sobel', ...), or 'unknown'
        when no family matches.
    description : str
        A sentence naming it with its parameters, e.g. 'Gaussian blur, sigma 1.2
        (scipy.ndimage's discretisation)'.
    parameters : dict
        The best candidate's parameters.
    matches : bool
        Whether the kernel is within its uncertainty of the best candidate.
    score : float
        Chi-square per degree of freedom against the stderr (a KernelFit) or the largest
        deviation over the tolerance (a bare array); about 1 or less is a match.
    model : ndarray
        The best candidate's kernel, shaped and oriented like the input.
    candidates : tuple of Candidate
        Every family's best model, best first.
    separable : bool
        Whether the kernel is numerically rank 1 (2-D kernels).
    rank, singular_values, factors
        Numerical rank and singular values; for rank 1, the column and row factors.
    rational : tuple or None
        ``(numerators, denominator)``: integer coefficients over the smallest common
        denominator within the uncertainty, if there is one.
    negligible : ndarray of bool
        Coefficients indistinguishable from zero.
    """

    name: str
    description: str
    parameters: dict
    matches: bool
    score: float
    model: np.ndarray
    candidates: tuple
    separable: bool
    rank: object
    singular_values: object
    factors: object
    rational: object
    negligible: np.ndarray

    def rational_text(self):
        """The rational form as text, e.g. '[[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]] / 8'."""
        if self.rational is None:
            return None
        numerators, denominator = self.rational
        text = np.array2string(numerators, separator=", ").replace("\n", "")
        return text if denominator == 1 else f"{' '.join(text.split())} / {denominator}"

    def __repr__(self):
        return f"Identification({self.description!r}, matches={self.matches})"

    def __str__(self):
        lines = [("" if self.matches else "closest: ") + self.description
                 + ("" if self.matches else f" (does not match within the uncertainty: "
                                             f"score {self.score:.3g})")]
        if self.rational is not None:
            lines.append(f"rational form: {self.rational_text()}")
        if self.rank is not None:
            if self.separable:
                column, row = self.factors
                with np.printoptions(precision=4, suppress=True):
                    lines.append(f"separable: column {column} x row {row}")
            else:
                with np.printoptions(precision=3):
                    lines.append(f"not separable: rank {self.rank}, singular values "
                                 f"{self.singular_values}")
        if self.negligible.any():
            lines.append(f"{int(self.negligible.sum())} of {self.negligible.size} coefficients "
                         f"are indistinguishable from zero")
        return "\n".join(lines)


def _as_stderr(stderr):
    """Standard errors as a float array: real, non-negative, NaN or inf where not determined."""
    try:
        array = np.asarray(stderr)
    except (TypeError, ValueError):
        array = np.asarray(None)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"stderr must be an array of real numbers (standard errors, NaN where "
                        f"not determined); got dtype {array.dtype}")
    array = array.astype(float)
    if np.any(array < 0):
        raise ValueError("stderr must be non-negative (standard errors); got a negative value")
    return array


def identify(fit_or_kernel, *, tolerance=None, convention=None, stderr=None, origin=None):
    """Name a kernel: its family and parameters, separability, and a rational form.

    Parameters
    ----------
    fit_or_kernel : KernelFit or array_like
        A fit (its standard errors judge every match) or a bare kernel.
    tolerance : float, optional
        For a bare kernel: the largest deviation from a model that still matches (default
        1e-3 of its largest coefficient). With standard errors, a floor added to them.
    convention : {'convolution', 'correlation'}, optional
        The kernel's orientation (a fit knows its own; default 'convolution').
    stderr : array_like, optional
        Standard errors of a bare kernel's coefficients (as a KernelFit's): matches are
        then judged by chi-square, as for a fit.
    origin : int or sequence of int, optional
        A bare kernel's anchor shift in 'same' mode (a fit knows its own).

    Returns
    -------
    Identification

    Notes
    -----
    Against standard errors, a model matches when its chi-square has a p-value above
    1e-4. The uncertainty has a floor of 5e-4 of the largest coefficient: least squares
    on rounded 8-bit outputs is biased at about that level (the outputs lie on a lattice),
    and no two families differ by so little.

    Examples
    --------
    >>> import numpy as np
    >>> from kernelfit import identify, kernels
    >>> result = identify(kernels.sobel("x"))
    >>> result.name, result.matches
    ('sobel', True)
    >>> pillow_sharpen = np.array([[-2, -2, -2], [-2, 32, -2], [-2, -2, -2]]) / 16
    >>> identify(pillow_sharpen).rational_text()
    '[[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]] / 8'
    """
    if convention is not None:
        check_choice(convention, "convention", CONVENTIONS)
    if isinstance(fit_or_kernel, KernelFit):
        fit = fit_or_kernel
        if fit.kernel.ndim != len(fit.size):
            raise ValueError(f"identify takes one spatial kernel; this fit's kernel has shape "
                             f"{fit.kernel.shape} (channels): pass fit.kernel[..., c] instead")
        kernel, stderr = fit.centred()
        convention, origin = fit.convention, (0,) * len(fit.size)
    else:
        kernel = as_float_array(fit_or_kernel, "kernel")
        if kernel.dtype.itemsize > np.dtype(kernel.dtype.kind + "8").itemsize * (
                1 + (kernel.dtype.kind == "c")):  # longdouble: LAPACK takes at most float64
            kernel = kernel.astype(complex if kernel.dtype.kind == "c" else float)
        convention = convention or "convolution"
        if stderr is not None:
            stderr = _as_stderr(stderr)
            if stderr.shape != kernel.shape:
                raise ValueError(f"stderr must have the kernel's shape {kernel.shape}; got "
                                 f"{stderr.shape}")
            if not np.isfinite(stderr).any():
                stderr = None  # nothing determined: judged by the tolerance, not by "any"
        origin = (0,) * kernel.ndim if origin is None else check_origin(
            origin, kernel.shape, "same", convention)
    if tolerance is not None:
        tolerance = check_scalar(tolerance, "tolerance", complex_ok=False)
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive; got {tolerance!r}")
    kernel = np.real_if_close(kernel)
    largest = float(np.abs(kernel).max())
    if largest > _LARGEST or 0 < largest < _SMALLEST:
        raise ValueError(f"kernel's largest magnitude is {largest:.3g}; identify takes "
                         f"kernels between {_SMALLEST:g} and {_LARGEST:g} (rescale it)")
    if tolerance is not None and not _SMALLEST <= tolerance <= _LARGEST:
        raise ValueError(f"tolerance must lie between {_SMALLEST:g} and {_LARGEST:g}; got "
                         f"{tolerance!r}")
    if stderr is not None:
        kernel, stderr = centre_on_anchor(kernel, stderr, kernel.shape, tuple(origin),
                                          convention)
        # Least squares on 8-bit outputs is biased at about 5e-4 of the peak (they lie on a
        # lattice); an exact fit (standard errors at the arithmetic's rounding) is not
        peak = float(np.abs(kernel).max())
        finite = np.abs(stderr[np.isfinite(stderr)])
        exact = finite.size and float(finite.max()) <= 1e-9 * peak
        floor = (1e-9 if exact else 5e-4) * peak + (tolerance or 0.0)
        raw = np.where(np.isfinite(stderr), np.abs(stderr), np.inf)
        # stderr far above the floor would overflow when squared: cap it (it matches anything)
        raw = np.where(raw > _LARGEST, np.inf, raw)
        sigma = np.hypot(raw, floor)
        by_chi2 = True
    else:
        kernel, _ = centre_on_anchor(kernel, np.zeros(kernel.shape), kernel.shape,
                                     tuple(origin), convention)
        scale = np.abs(kernel).max() or 1.0
        sigma = np.full(kernel.shape, float(tolerance or 1e-3 * scale))
        by_chi2 = False
    if np.iscomplexobj(kernel):
        raise ValueError("identify names real kernels; this one is complex (identify its real "
                         "and imaginary parts separately)")
    if largest == 0 or kernel.size == 1:
        return _trivial(kernel, sigma, by_chi2)
    # Below this a coefficient is zero: 3 stderr (without the matching floor) for a fit;
    # for an exact array, rounding.
    zero = 3 * raw + 1e-12 * np.abs(kernel).max() if by_chi2 else np.full(
        kernel.shape, 1e-12 * (np.abs(kernel).max() or 1.0))
    candidates = []
    for family in _FAMILIES:
        for name, description, parameters, model, n_parameters in family(kernel, zero,
                                                                          convention):
            if model.shape != kernel.shape or not np.all(np.isfinite(model)):
                continue
            candidates.append(_judge(kernel, sigma, by_chi2, name, description, parameters,
                                     model, n_parameters))
    # Among models that match, the simplest; among the rest, the closest.
    candidates.sort(key=lambda c: (not c.matches, c.n_parameters if c.matches else 0, c.score))
    best = candidates[0] if candidates else None
    negligible = np.abs(kernel) <= 3 * sigma
    rank, singular, factors = _separability(kernel, sigma)
    return Identification(
        name=best.name if best and best.matches else "unknown",
        description=best.description if best else "no family applies",
        parameters=dict(best.parameters) if best else {},
        matches=bool(best and best.matches), score=best.score if best else np.inf,
        model=best.model if best else np.zeros_like(kernel), candidates=tuple(candidates),
        separable=rank == 1, rank=rank, singular_values=singular, factors=factors,
        rational=_rational(kernel, sigma), negligible=negligible)


# Magnitudes whose squares (summed over a kernel) and reciprocals stay finite in float64.
_LARGEST = 1e50
_SMALLEST = 1e-50


def _trivial(kernel, sigma, by_chi2):
    """An all-zero kernel, or one coefficient: a scaled identity; no family applies."""
    if kernel.size == 1 and kernel.flat[0] != 0:
        value = float(kernel.flat[0])
        name, description, parameters = "identity", "identity" + _scale_text(value), {
            "scale": value}
    else:
        name, description, parameters = "zero", "zero kernel (all coefficients are 0)", {}
    if kernel.ndim == 2:
        rank = int(kernel.size == 1 and kernel.flat[0] != 0)
        singular = np.linalg.svd(kernel, compute_uv=False)
        factors = (np.ones(1), kernel[0].copy()) if rank else None
    else:
        rank = singular = factors = None
    candidate = Candidate(name, description, parameters, kernel.copy(), 0.0, True,
                          int(bool(parameters)))
    rational = (_rational(kernel, sigma) if kernel.size == 1
                else (np.zeros(kernel.shape, dtype=int), 1))
    return Identification(
        name=name, description=description, parameters=parameters, matches=True, score=0.0,
        model=kernel.copy(), candidates=(candidate,), separable=rank == 1, rank=rank,
        singular_values=singular, factors=factors, rational=rational,
        negligible=np.abs(kernel) <= 3 * sigma)


def _judge(kernel, sigma, by_chi2, name, description, parameters, model, n_parameters):
    import scipy.stats

    deviation = np.abs(kernel - model)
    if by_chi2:
        finite = np.isfinite(sigma)
        chi2 = float(np.sum((deviation[finite] / sigma[finite]) ** 2))
        dof = max(int(finite.sum()) - n_parameters, 1)
        score = chi2 / dof
        matches = bool(scipy.stats.chi2.sf(chi2, dof) > 1e-4)
    else:
        score = float((deviation / sigma).max())
        matches = score <= 1.0
    return Candidate(name, description, parameters, model, score, matches, n_parameters)


# --- geometry helpers ----------------------------------------------------------------------

def _embed(small, shape, convention, crop=0.03):
    """Place an odd, centred model inside a kernel of `shape` at its anchor.

    A model larger than the kernel is cropped around its centre when what is cut off
    carries less than `crop` of its total weight (a Gaussian's far tails, or the faint rings
    that size='auto' leaves out on 8-bit data: a few per cent, which the family's free scale
    takes up); else None.
    """
    excess = [max(s - k, 0) for s, k in zip(small.shape, shape)]
    if any(excess):
        if any(e % 2 for e in excess):
            return None
        cropped = small[tuple(slice(e // 2, s - e // 2) for e, s in zip(excess, small.shape))]
        if np.abs(small).sum() - np.abs(cropped).sum() > crop * np.abs(small).sum():
            return None
        small = cropped
    out = np.zeros(shape)
    at = anchor(shape, convention)
    index = tuple(slice(a - s // 2, a - s // 2 + s) for a, s in zip(at, small.shape))
    if any(sl.start < 0 or sl.stop > k for sl, k in zip(index, shape)):
        return None
    out[index] = small
    return out


def _scaled(kernel, model):
    """The least-squares scale of `model` to `kernel`."""
    norm = float(np.sum(model * model))
    return float(np.sum(kernel * model) / norm) if norm else 0.0


def _number(value):
    return f"{value:.4g}"


def _scale_text(scale):
    return "" if abs(scale - 1) < 1e-3 else f", scale {_number(scale)}"


# --- the families -------------------------------------------------------------------------

def _shift(kernel, zero, convention):
    index = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    model = np.zeros(kernel.shape)
    model[index] = kernel[index]
    at = anchor(kernel.shape, convention)
    sign = 1 if convention == "convolution" else -1
    offset = tuple(int(sign * (i - a)) for i, a in zip(index, at))
    value = float(kernel[index])
    if not any(offset):
        description = "identity" + _scale_text(value)
        yield "identity", description, {"scale": value}, model, 1
    else:
        description = f"shift by {offset} (output[n] = input[n - offset])" + _scale_text(value)
        yield "shift", description, {"offset": offset, "scale": value}, model, 1


def _box(kernel, zero, convention):
    # A constant over the smallest box that holds the large coefficients.
    large = np.abs(kernel) > 0.5 * np.abs(kernel).max()
    bounds = [np.flatnonzero(large.any(axis=tuple(a for a in range(kernel.ndim) if a != axis)))
              for axis in range(kernel.ndim)]
    index = tuple(slice(b[0], b[-1] + 1) for b in bounds)
    model = np.zeros(kernel.shape)
    model[index] = kernel[index].mean()
    shape = tuple(b[-1] - b[0] + 1 for b in bounds)
    total = model[index].mean() * np.prod(shape)
    what = "box blur (mean)" if abs(total - 1) < 1e-3 else "box"
    yield ("box", f"{what} {'x'.join(map(str, shape))}" + _scale_text(total),
           {"shape": shape, "scale": total}, model, 1)


def _box_passes(kernel, zero, convention):
    """n passes of a k-wide box (n >= 2): separable B-spline-like blurs, as video filters
    and repeated mean filters make; the support is n (k - 1) + 1."""
    best = None
    for width in range(2, max(kernel.shape) + 1):
        box = line = np.ones(width) / width
        for passes in range(2, 7):
            line = np.convolve(line, box)
            if len(line) % 2 == 0:
                continue
            model = _embed(functools.reduce(np.multiply.outer, [line] * kernel.ndim),
                           kernel.shape, convention)
            if model is None:
                break
            scale = _scaled(kernel, model)
            error = np.sum((kernel - scale * model) ** 2)
            if best is None or error < best[0]:
                best = (error, width, passes, scale * model, scale)
    if best is not None:
        _, width, passes, model, scale = best
        box = "x".join([str(width)] * kernel.ndim)
        support = passes * (width - 1) + 1
        yield ("box_passes", f"{passes} passes of a {box} box ({support}-wide "
               f"{'triangle' if passes == 2 else 'piecewise polynomial'})" + _scale_text(scale),
               {"width": width, "passes": passes, "scale": scale}, model, 1)


def _pillow_kernel(radius, passes):
    return (kernels.pillow_box_blur(radius) if passes == 1
            else kernels.pillow_gaussian_blur(radius))


def _pillow_blurs(kernel, zero, convention):
    import scipy.optimize

    if kernel.ndim != 2:
        return
    for passes, name, label in ((1, "pillow_box_blur", "Pillow BoxBlur"),
                                (3, "pillow_gaussian_blur", "Pillow GaussianBlur")):
        best = None
        for radius in np.arange(0.25, max(kernel.shape) / 2 + 0.01, 0.05):
            model = _embed(_pillow_kernel(radius, passes), kernel.shape, convention)
            if model is None:
                continue
            error = np.sum((kernel - model) ** 2)
            if best is None or error < best[0]:
                best = (error, radius, model)
        if best is None:
            continue
        _, radius, _ = best

        def error_at(r, passes=passes):
            model = _embed(_pillow_kernel(r, passes), kernel.shape, convention)
            # a radius whose support does not fit scores badly, but finitely
            return 1e10 if model is None else float(np.sum((kernel - model) ** 2))

        result = scipy.optimize.minimize_scalar(
            error_at, bounds=(max(radius - 0.05, 0.01), radius + 0.05), method="bounded")
        model = _embed(_pillow_kernel(result.x, passes), kernel.shape, convention)
        if model is not None:
            yield (name, f"{label}(radius={_number(result.x)})", {"radius": float(result.x)},
                   model, 1)


def _gaussian_model(shape, sigmas, convention):
    """Sampled Gaussian (normalised over `shape`) centred at the kernel's anchor."""
    at = anchor(shape, convention)
    centre = [a if k % 2 else (k - 1) / 2 for a, k in zip(at, shape)]
    vectors = []
    for k, c, s in zip(shape, centre, sigmas):
        x = np.arange(k) - c
        g = np.exp(-0.5 * (x / s) ** 2)
        vectors.append(g / g.sum())
    return np.asarray(functools.reduce(np.multiply.outer, vectors))


def _gaussian(kernel, zero, convention):
    import scipy.optimize

    if kernel.sum() <= 0 or kernel.max() <= 0:
        return
    # Fit the support that matters, then the standard deviation(s) within it.
    ndim = kernel.ndim

    def residual(params):
        *sigmas, scale = params
        return (kernel - scale * _gaussian_model(kernel.shape, sigmas, convention)).ravel()

    start = [max(0.5, k / 6) for k in kernel.shape] + [float(kernel.sum())]
    for isotropic in (True, False):
        if isotropic:
            result = scipy.optimize.least_squares(
                lambda p: residual([p[0]] * ndim + [p[1]]), [start[0], start[-1]],
                bounds=([0.05, -np.inf], [np.inf, np.inf]))
            sigmas, scale = [result.x[0]] * ndim, result.x[1]
        else:
            if ndim == 1:
                continue
            result = scipy.optimize.least_squares(
                residual, start, bounds=([0.05] * ndim + [-np.inf], [np.inf] * (ndim + 1)))
            sigmas, scale = list(result.x[:-1]), result.x[-1]
        model = scale * _gaussian_model(kernel.shape, sigmas, convention)
        sigma_text = (_number(sigmas[0]) if isotropic else
                      "(" + ", ".join(_number(s) for s in sigmas) + ")")
        source = _gaussian_source(kernel, zero, sigmas, isotropic)
        yield ("gaussian", f"Gaussian blur, sigma {sigma_text}{source}" + _scale_text(scale),
               {"sigma": sigmas[0] if isotropic else tuple(sigmas), "scale": float(scale)},
               model, (1 if isotropic else ndim) + 1)
        if isotropic and ndim == 2:
            yield from _opencv_8bit(kernel, sigmas[0], convention)
    # OpenCV's fixed tables for ksize <= 7 (sigma <= 0)
    tables = {3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
              7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    for k, line in tables.items():
        small = np.asarray(functools.reduce(np.multiply.outer,
                                                          [np.array(line)] * ndim))
        model = _embed(small, kernel.shape, convention)
        if model is not None:
            yield ("gaussian", f"Gaussian blur, OpenCV's {k}x{k} table "
                   f"(getGaussianKernel({k}, 0))", {"ksize": k, "table": "opencv"}, model, 0)


def _opencv_fixed_point(ksize, sigma, bits=8):
    """OpenCV's 1-D Gaussian for 8-bit images, as integers over 2**bits.

    cv2.GaussianBlur on uint8 runs in fixed point: the sampled Gaussian is rounded from the
    edges inwards, each rounding error carried to the next tap, and the centre takes what
    is left so that the taps sum to 2**bits (getGaussianKernelFixedPoint_ED). The kernel
    differs from the exact Gaussian by up to 2**-bits per tap, far more than a fit's
    standard errors on a clean image.
    """
    x = np.arange(ksize) - ksize // 2
    line = np.exp(-0.5 * (x / sigma) ** 2)
    line *= (1 << bits) / line.sum()
    taps = np.zeros(ksize, dtype=np.int64)
    carried = 0.0
    for i in range(ksize // 2):
        value = line[i] + carried
        taps[i] = taps[-1 - i] = int(np.rint(value))
        carried = value - taps[i]
    taps[ksize // 2] = (1 << bits) - 2 * int(taps[:ksize // 2].sum())
    return tuple(int(t) for t in taps)


def _opencv_8bit(kernel, sigma, convention):
    """cv2.GaussianBlur on 8-bit images: the fixed-point kernel nearest the fitted sigma.

    The integer taps change with sigma in steps; among the sigmas giving the best taps, the
    roundest is reported (1.0 rather than 0.9987).
    """
    if not 0.1 <= sigma <= max(kernel.shape):  # wider than the kernel: nothing to quantise
        return
    best = None
    for ksize in range(3, min(kernel.shape) + 1, 2):
        for trial in np.arange(max(0.8 * sigma, 0.1), 1.2 * sigma + 1e-3, 0.002):
            taps = _opencv_fixed_point(ksize, trial)
            model = _embed(np.multiply.outer(taps, taps) / 65536.0, kernel.shape, convention)
            if model is None:
                continue
            error = float(np.sum((kernel - model) ** 2))
            if best is None or error < best[0] - 1e-15:
                best = (error, ksize, taps, [trial], model)
            elif error <= best[0] + 1e-15 and taps == best[2] and ksize == best[1]:
                best[3].append(trial)
    if best is None:
        return
    _, ksize, taps, trials, model = best
    middle = trials[len(trials) // 2]
    chosen = next((round(middle, digits) for digits in range(4)
                   if round(middle, digits) > 0
                   and _opencv_fixed_point(ksize, round(middle, digits)) == taps), middle)
    yield ("gaussian", f"Gaussian blur, sigma {_number(chosen)}, as cv2.GaussianBlur on 8-bit "
           f"images (ksize {ksize}: fixed-point taps {list(taps)} / 256 per axis)",
           {"sigma": float(chosen), "ksize": ksize, "table": "opencv_8bit", "taps": taps},
           model, 2)


def _gaussian_source(kernel, zero, sigmas, isotropic):
    """Which library's support rule the extent of a Gaussian matches, if any (only where
    the data show where the support ends)."""
    if not isotropic:
        return ""
    spread = sigmas[0]
    large = np.abs(kernel) > zero
    if not large.any():
        return ""
    extent = max(np.ptp(np.flatnonzero(large.any(axis=tuple(a for a in range(kernel.ndim)
                                                            if a != axis)))) + 1
                 for axis in range(kernel.ndim))
    # The extent says where the filter's support ends only if the data could have seen the
    # next ring: its coefficient well above what they cannot tell from zero (a fit of 8-bit
    # data loses the faint tails; an exact array or an exact fit does not)
    peak = float(np.abs(kernel).max())
    next_ring = peak * np.exp(-((extent // 2 + 1) ** 2) / (2 * spread ** 2))
    if next_ring <= 3 * float(np.median(zero)):
        return ""
    rules = []
    if extent == 2 * int(4.0 * spread + 0.5) + 1:
        rules.append("scipy.ndimage's (2 int(4 sigma + 0.5) + 1)")
    if extent == (int(round(spread * 6 + 1)) | 1):
        rules.append("OpenCV's default for 8-bit images (6 sigma + 1, odd)")
    return f" (support {extent}: {' and '.join(rules)})" if rules else ""


def _disk(kernel, zero, convention):
    best = None
    for radius in np.arange(1.0, max(kernel.shape) / 2 + 0.01, 0.25):
        model = _embed(kernels.disk(radius, ndim=kernel.ndim), kernel.shape, convention)
        if model is None:
            continue
        scale = _scaled(kernel, model)
        error = np.sum((kernel - scale * model) ** 2)
        if best is None or error < best[0]:
            best = (error, radius, scale * model, scale)
    if best is not None:
        _, radius, model, scale = best
        yield ("disk", f"disk (flat circular) blur, radius {_number(radius)}"
               + _scale_text(scale), {"radius": float(radius), "scale": scale}, model, 2)


def _motion(kernel, zero, convention):
    import scipy.optimize

    if kernel.ndim != 2 or kernel.max() <= 0:
        return

    def model_of(length, angle):
        return _embed(kernels.motion_blur(length, angle), kernel.shape, convention)

    best = None
    for length in np.arange(2.0, max(kernel.shape) + 0.01, 1.0):
        for angle in np.arange(0.0, 180.0, 7.5):
            model = model_of(length, angle)
            if model is None:
                continue
            error = np.sum((kernel - _scaled(kernel, model) * model) ** 2)
            if best is None or error < best[0]:
                best = (error, length, angle)
    if best is None:
        return

    def objective(p):
        model = model_of(max(p[0], 1.0), p[1])
        if model is None:  # too long for the kernel: a bad but finite score
            return 1e10
        return np.sum((kernel - _scaled(kernel, model) * model) ** 2)

    result = scipy.optimize.minimize(objective, best[1:], method="Nelder-Mead",
                                     options=dict(xatol=1e-3, fatol=1e-14))
    length, angle = max(result.x[0], 1.0), result.x[1] % 180
    model = model_of(length, angle)
    if model is not None:
        scale = _scaled(kernel, model)
        yield ("motion_blur", f"motion blur, length {_number(length)}, angle "
               f"{_number(angle)} degrees" + _scale_text(scale),
               {"length": float(length), "angle": float(angle), "scale": scale},
               scale * model, 3)


def _fixed(kernel, zero, convention):
    """Kernels of fixed shape up to a scale: gradients, Laplacians, edge detection, emboss."""
    ndim = kernel.ndim
    axes = {-1: "x", -2: "y", -3: "z"}
    models = []
    for name, make in (("sobel", kernels.sobel), ("scharr", kernels.scharr),
                       ("prewitt", kernels.prewitt)):
        for axis in range(ndim):
            label = axes.get(axis - ndim, str(axis))
            models.append((name, f"{name.capitalize()} d/d{label}", {"axis": label},
                           make(axis, ndim=ndim, convention=convention)))
    models.append(("laplacian", "Laplacian (4-neighbour)", {"diagonal": False},
                   kernels.laplacian(ndim=ndim)))
    models.append(("laplacian", "Laplacian (8-neighbour)", {"diagonal": True},
                   kernels.laplacian(ndim=ndim, diagonal=True)))
    if ndim == 2:
        emboss = kernels.emboss(convention="correlation")
        for turn, flip in itertools.product(range(4), (False, True)):
            rotated = np.rot90(emboss.T if flip else emboss, turn)
            oriented = rotated if convention == "correlation" else np.flip(rotated)
            models.append(("emboss", "emboss (3x3 relief)", {"variant": (turn, flip)},
                           oriented))
        for dy, dx in itertools.product((-1, 0, 1), repeat=2):
            if dy == dx == 0:
                continue
            difference = np.zeros((3, 3))
            difference[1, 1] = 1.0
            # the subtracted input sample sits at offset (dy, dx) from the output sample
            if convention == "correlation":
                difference[1 + dy, 1 + dx] = -1.0
            else:
                difference[1 - dy, 1 - dx] = -1.0
            models.append(("emboss", f"emboss: centre minus the neighbour at offset "
                           f"({dy}, {dx}) (as Pillow's EMBOSS)", {"offset": (dy, dx)},
                           difference))
    for name, description, parameters, small in models:
        model = _embed(small, kernel.shape, convention)
        if model is None:
            continue
        scale = _scaled(kernel, model)
        if name == "laplacian" and scale < 0 and parameters["diagonal"]:
            name, description = "edge_detection", "edge detection (negative 8-neighbour " \
                "Laplacian, as Pillow's FIND_EDGES)"
            scale = -scale
            model = -model
        yield (name, description + _scale_text(scale), dict(parameters, scale=scale),
               scale * model, 1)


# Pillow's built-in kernel filters that no other family names (SHARPEN, DETAIL and
# EDGE_ENHANCE are sharpening, EMBOSS an emboss, FIND_EDGES and CONTOUR edge detection)
PILLOW_FILTERS = ("BLUR", "SMOOTH", "SMOOTH_MORE")


def _pillow_filters(kernel, zero, convention):
    """Pillow's ImageFilter kernels (BLUR's ring, SMOOTH, DETAIL, ...), up to a scale. Pillow
    applies its weights mirrored left to right: the convolution kernel is ``w[:, ::-1]``."""
    if kernel.ndim != 2:
        return
    from PIL import ImageFilter

    for name in PILLOW_FILTERS:
        size, scale, _, weights = getattr(ImageFilter, name).filterargs
        weights = np.asarray(weights, dtype=float).reshape(size[::-1]) / scale
        small = weights[:, ::-1] if convention == "convolution" else weights[::-1, :]
        model = _embed(small, kernel.shape, convention)
        if model is None:
            continue
        factor = _scaled(kernel, model)
        yield ("pillow_filter", f"Pillow's ImageFilter.{name}" + _scale_text(factor),
               {"filter": name, "scale": factor}, factor * model, 1)


def _sharpen(kernel, zero, convention):
    """identity + amount * (identity - blur) forms: Laplacian sharpening and unsharp masks."""
    import scipy.optimize

    ndim = kernel.ndim
    identity = _embed(kernels.identity(1, ndim=ndim), kernel.shape, convention)
    if identity is None:
        return
    for diagonal in (False, True):
        laplacian = _embed(kernels.laplacian(ndim=ndim, diagonal=diagonal), kernel.shape,
                           convention)
        if laplacian is None:
            continue
        design = np.stack([identity.ravel(), -laplacian.ravel()], axis=1)
        (gain, amount), *_ = np.linalg.lstsq(design, kernel.ravel(), rcond=None)
        if amount <= 0:
            continue
        model = (design @ [gain, amount]).reshape(kernel.shape)
        yield ("sharpen", f"sharpen: identity - {_number(amount)} x "
               f"{'8' if diagonal else '4'}-neighbour Laplacian" + _scale_text(gain),
               {"amount": float(amount), "diagonal": diagonal, "gain": float(gain)}, model, 2)
    odd = all(k % 2 for k in kernel.shape)
    if not odd or kernel.max() <= 0 or max(kernel.shape) < 3:  # no room for a Gaussian
        return

    def model_of(amount, sigma):
        return (1 + amount) * identity - amount * _gaussian_model(kernel.shape,
                                                                  [sigma] * ndim, convention)

    # sigma stays below the kernel's half-width: a wider Gaussian is flat over the kernel,
    # and the 8-neighbour sharpen above already describes that
    result = scipy.optimize.least_squares(
        lambda p: (kernel - model_of(*p)).ravel(), [0.5, 1.0],
        bounds=([0.0, 0.1], [np.inf, max(kernel.shape) / 2]))
    amount, sigma = result.x
    yield ("unsharp_mask", f"unsharp mask, amount {_number(amount)}, sigma {_number(sigma)}",
           {"amount": float(amount), "sigma": float(sigma)}, model_of(amount, sigma), 2)


_FAMILIES = (_shift, _box, _box_passes, _pillow_blurs, _gaussian, _disk, _motion, _fixed, _sharpen,
             _pillow_filters)


# --- separability and rational form ---------------------------------------------------------

def _separability(kernel, sigma):
    if kernel.ndim != 2:
        return None, None, None
    u, s, vh = np.linalg.svd(kernel)
    finite = sigma[np.isfinite(sigma)]
    noise = 3 * float(np.linalg.norm(finite)) if finite.size else 0.0
    rank = int(np.sum(s > max(noise, 1e-12 * s[0])))
    factors = None
    if rank == 1:
        column, row = u[:, 0] * np.sqrt(s[0]), vh[0] * np.sqrt(s[0])
        total = column.sum()
        if abs(total) > 1e-12:  # normalise the column to sum 1 when it can be
            column, row = column / total, row * total
        elif column[np.argmax(np.abs(column))] < 0:
            column, row = -column, -row
        factors = (column, row)
    return rank, s, factors


def _rational(kernel, sigma, max_denominator=4096):
    """Integers over the smallest common denominator that fit within 3 stderr, if any.

    A denominator counts only while 3 stderr times it stays below 0.05: each coefficient
    then lands near an integer by chance about one time in six, so several of them
    together are evidence, not coincidence.
    """
    largest = float(np.max(sigma)) if np.isfinite(sigma).all() else np.inf
    for denominator in range(1, max_denominator + 1):
        if 3 * largest * denominator > 0.05:  # the data cannot tell these integers apart
            return None
        scaled = kernel * denominator
        numerators = np.rint(scaled)
        # within 5 of the largest stderr: 8-bit outputs of a rational kernel lie on a
        # lattice, and their rounding errors are not quite independent noise
        if np.all(np.abs(scaled - numerators) <= 5 * largest * denominator + 1e-9):
            return numerators.astype(int), denominator
    return None
