"""Named kernels as plain functions returning arrays, to make test data and to compare fits with.

Kernels whose orientation matters take ``convention``: the returned array does what its name
says when applied with that convention ('convolution', kernelfit's default, or 'correlation').
Symmetric kernels are the same in both conventions.
"""

import functools
import math
import numbers

import numpy as np

from ._geometry import anchor
from ._validation import CONVENTIONS, check_axis, check_choice, check_int_tuple

__all__ = [
    "box",
    "disk",
    "edge_detection",
    "emboss",
    "gaussian",
    "identity",
    "laplacian",
    "motion_blur",
    "pillow_box_blur",
    "pillow_gaussian_blur",
    "prewitt",
    "random",
    "scharr",
    "sharpen",
    "shift",
    "sobel",
    "unsharp_mask",
]

_AXIS_NAMES = {"x": -1, "y": -2, "z": -3}


def _outer(vectors):
    return functools.reduce(np.multiply.outer, vectors)


def _check_ndim(ndim):
    if isinstance(ndim, bool) or not isinstance(ndim, numbers.Integral) or ndim < 1:
        raise ValueError(f"ndim must be a positive integer; got {ndim!r}")
    return int(ndim)


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0 \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def _per_axis(value, name, ndim):
    """A positive number or a sequence of `ndim` positive numbers, as a tuple of floats."""
    values = tuple(value) if np.ndim(value) else (value,) * ndim
    if len(values) != ndim:
        raise ValueError(f"{name} must be a number or a sequence of {ndim} numbers; "
                         f"got {value!r}")
    return tuple(_check_positive(v, name) for v in values)


def _axis(axis, ndim):
    if isinstance(axis, str):
        if axis not in _AXIS_NAMES:
            raise ValueError(f"axis must be an integer or one of 'x', 'y', 'z'; got {axis!r}")
        axis = _AXIS_NAMES[axis]
    return check_axis(axis, ndim, "axis")


def _oriented(kernel_in_correlation, convention):
    check_choice(convention, "convention", CONVENTIONS)
    if convention == "convolution":
        return np.flip(kernel_in_correlation).copy()
    return kernel_in_correlation


def gaussian(size=None, sigma=None, *, ndim=2, truncate=4.0):
    """Sampled Gaussian, normalised to sum 1.

    Symmetric: the same in both conventions.

    Parameters
    ----------
    size : int or sequence of int, optional
        Kernel length per axis (odd or even; an even length centres the Gaussian between
        two samples). Default: ``2 * int(truncate * sigma + 0.5) + 1``, as
        scipy.ndimage.gaussian_filter.
    sigma : float or sequence of float, optional
        Standard deviation per axis, in samples. Default (with `size`): OpenCV's rule
        ``0.3 * ((size - 1) * 0.5 - 1) + 0.8``.
    ndim : int, optional
        Number of axes when `size` and `sigma` are scalars.
    truncate : float, optional
        Radius in standard deviations when `size` is not given.

    Returns
    -------
    kernel : (K1, ..., Kndim) ndarray
        float64, summing to 1. With `sigma` only it equals scipy.ndimage's kernel.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.gaussian(3, sigma=1.0, ndim=1).round(4)
    array([0.2741, 0.4519, 0.2741])
    >>> kernels.gaussian(sigma=1.5).shape
    (13, 13)
    """
    if size is None and sigma is None:
        raise ValueError("gaussian needs size, sigma, or both")
    ndim = len(size) if np.ndim(size) else len(sigma) if np.ndim(sigma) else _check_ndim(ndim)
    truncate = _check_positive(truncate, "truncate")
    if size is None:
        sigmas = _per_axis(sigma, "sigma", ndim)
        sizes = tuple(2 * int(truncate * s + 0.5) + 1 for s in sigmas)
    else:
        sizes = check_int_tuple(size, "size", ndim, minimum=1)
        sigmas = (tuple(0.3 * ((k - 1) * 0.5 - 1) + 0.8 for k in sizes) if sigma is None
                  else _per_axis(sigma, "sigma", ndim))
    vectors = []
    for k, s in zip(sizes, sigmas):
        x = np.arange(k) - (k - 1) / 2
        g = np.exp(-0.5 * (x / s) ** 2)
        vectors.append(g / g.sum())
    return _outer(vectors)


def box(size, *, ndim=2):
    """Box (mean) filter: every coefficient ``1 / size**ndim``.

    Symmetric: the same in both conventions.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.box(2)
    array([[0.25, 0.25],
           [0.25, 0.25]])
    >>> kernels.box((1, 4)).shape
    (1, 4)
    """
    ndim = len(size) if np.ndim(size) else _check_ndim(ndim)
    sizes = check_int_tuple(size, "size", ndim, minimum=1)
    return np.full(sizes, 1.0 / np.prod(sizes))


def disk(radius, *, ndim=2):
    """Flat disk (ball in N-D): the samples within `radius` of the centre, normalised to sum 1.

    Symmetric: the same in both conventions. The shape is ``2 * floor(radius) + 1`` per axis.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> (kernels.disk(1) * 5).round(6)
    array([[0., 1., 0.],
           [1., 1., 1.],
           [0., 1., 0.]])
    """
    radius = _check_positive(radius, "radius")
    ndim = _check_ndim(ndim)
    r = int(np.floor(radius))
    grid = np.indices((2 * r + 1,) * ndim) - r
    inside = (grid ** 2).sum(axis=0) <= radius ** 2 + 1e-9
    return inside / inside.sum()


def motion_blur(length, angle=0.0):
    """Linear motion blur: a segment of `length` samples through the centre, normalised.

    Point-symmetric, so the same in both conventions. Each sample's weight is the length of
    the ideal segment inside that sample's unit square, so the kernel is exact at every
    angle: horizontal and vertical motions of odd length are plain rows of ``1 / length``,
    and an even or fractional `length` has partial end samples.

    Parameters
    ----------
    length : float
        Length of the motion, in samples.
    angle : float, optional
        Direction in degrees, counter-clockwise from the +x (column) axis as an image is
        displayed (row 0 at the top): 0 is horizontal, 90 vertical.

    Returns
    -------
    kernel : (K, K) ndarray
        Odd K, summing to 1.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.motion_blur(3)
    array([[0.        , 0.        , 0.        ],
           [0.33333333, 0.33333333, 0.33333333],
           [0.        , 0.        , 0.        ]])
    >>> kernels.motion_blur(2)[1]
    array([0.25, 0.5 , 0.25])
    """
    length = _check_positive(length, "length")
    angle = np.deg2rad(float(angle))
    half = int(np.ceil(length / 2 + 0.5)) - 1
    centres = np.arange(-half, half + 1, dtype=float)
    # The segment is t * (cos a, -sin a) for |t| <= length / 2 (rows grow downwards); clip
    # it to each sample's square, axis by axis, as in Liang-Barsky line clipping.
    t_low = np.full((centres.size,) * 2, -length / 2)
    t_high = np.full((centres.size,) * 2, length / 2)
    for direction, grid in ((np.cos(angle), centres[np.newaxis, :]),
                            (-np.sin(angle), centres[:, np.newaxis])):
        if abs(direction) < 1e-12:
            # The segment runs along this axis' zero line: inside the central sample only.
            inside = np.abs(grid) < 0.5
            t_high = np.where(inside, t_high, -np.inf)
            continue
        ends = np.sort(np.stack(np.broadcast_arrays((grid - 0.5) / direction,
                                                    (grid + 0.5) / direction)), axis=0)
        t_low, t_high = np.maximum(t_low, ends[0]), np.minimum(t_high, ends[1])
    kernel = np.clip(t_high - t_low, 0, None)
    return kernel / kernel.sum()


def _pillow_box_line(radius):
    """One pass of Pillow's box blur of a fractional radius: [f, 1, ..., 1, f] / (2 r + 1)."""
    whole = int(radius)
    weights = np.ones(2 * whole + 3)
    weights[[0, -1]] = radius - whole
    return np.trim_zeros(weights / (2 * radius + 1))


def pillow_box_blur(radius):
    """The kernel of Pillow's ``ImageFilter.BoxBlur(radius)``.

    Pillow averages ``2 * radius + 1`` samples along each axis, the two end samples
    weighted by the fractional part of `radius`. Symmetric: the same in both conventions.
    (Pillow clamps the edges: ``boundary='edge'``.)

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.pillow_box_blur(1.5)[2] * 16
    array([0.5, 1. , 1. , 1. , 0.5])
    """
    radius = _check_positive(radius, "radius")
    line = _pillow_box_line(radius)
    return np.outer(line, line)


def pillow_gaussian_blur(radius):
    """The kernel of Pillow's ``ImageFilter.GaussianBlur(radius)``: three box blurs.

    Pillow approximates a Gaussian of standard deviation `radius` by three passes of a box
    blur whose fractional radius comes from its BoxBlur.c (``_gaussian_blur_radius``), along
    each axis. Symmetric: the same in both conventions. Pillow rounds to 8 bits between
    passes and clamps edges in each, which no single linear kernel reproduces exactly.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> k = kernels.pillow_gaussian_blur(1.5)
    >>> k.shape, round(float(k.sum()), 12)
    ((13, 13), 1.0)
    """
    radius = _check_positive(radius, "radius")
    variance = radius * radius / 3
    length = math.sqrt(12.0 * variance + 1.0)
    whole = math.floor((length - 1.0) / 2.0)
    fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * variance)
    fraction /= 6 * (variance - (whole + 1) * (whole + 1))
    box = _pillow_box_line(whole + fraction)
    line = np.convolve(np.convolve(box, box), box)
    return np.outer(line, line)


def _gradient(smooth, axis, ndim, convention):
    ndim = _check_ndim(ndim)
    axis = _axis(axis, ndim)
    vectors = [np.array([-1.0, 0.0, 1.0]) if a == axis else np.asarray(smooth, float)
               for a in range(ndim)]
    return _oriented(_outer(vectors), convention)


def sobel(axis=-1, *, ndim=2, convention="convolution"):
    """Sobel derivative along `axis`, smoothing ``[1, 2, 1]`` along the others (unnormalised).

    The response is positive where the data increases along `axis` (as
    scipy.ndimage.sobel and cv2.Sobel). In correlation orientation the 2-D x kernel is
    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``; in convolution orientation it is flipped.

    Parameters
    ----------
    axis : int or {'x', 'y', 'z'}, optional
        Derivative axis: 'x' is the last axis (columns), 'y' the one before (rows).
    ndim : int, optional
        Number of axes.
    convention : {'convolution', 'correlation'}, optional
        Orientation of the returned array.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.sobel("x", convention="correlation")
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    >>> kernels.sobel("y")
    array([[ 1.,  2.,  1.],
           [ 0.,  0.,  0.],
           [-1., -2., -1.]])
    """
    return _gradient([1, 2, 1], axis, ndim, convention)


def scharr(axis=-1, *, ndim=2, convention="convolution"):
    """Scharr derivative along `axis`, smoothing ``[3, 10, 3]`` along the others (as OpenCV).

    Oriented like :func:`sobel`.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.scharr("x", convention="correlation")
    array([[ -3.,   0.,   3.],
           [-10.,   0.,  10.],
           [ -3.,   0.,   3.]])
    """
    return _gradient([3, 10, 3], axis, ndim, convention)


def prewitt(axis=-1, *, ndim=2, convention="convolution"):
    """Prewitt derivative along `axis`, smoothing ``[1, 1, 1]`` along the others.

    Oriented like :func:`sobel` (as scipy.ndimage.prewitt).

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.prewitt("x", ndim=1, convention="correlation")
    array([-1.,  0.,  1.])
    """
    return _gradient([1, 1, 1], axis, ndim, convention)


def laplacian(*, ndim=2, diagonal=False):
    """Discrete Laplacian: ``[1, -2, 1]`` summed over the axes (as scipy.ndimage.laplace).

    Symmetric: the same in both conventions.

    Parameters
    ----------
    ndim : int, optional
        Number of axes.
    diagonal : bool, optional
        Use every neighbour in the 3**ndim cube (the 8-neighbour Laplacian in 2-D).

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.laplacian()
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]])
    """
    ndim = _check_ndim(ndim)
    if diagonal:
        kernel = np.ones((3,) * ndim)
        kernel[(1,) * ndim] = 1 - 3 ** ndim
        return kernel
    kernel = np.zeros((3,) * ndim)
    for axis in range(ndim):
        index = [1] * ndim
        for i, value in zip((0, 1, 2), (1.0, -2.0, 1.0)):
            index[axis] = i
            kernel[tuple(index)] += value
    return kernel


def sharpen(amount=1.0, *, ndim=2):
    """Laplacian sharpening: ``identity - amount * laplacian``.

    Symmetric: the same in both conventions. Coefficients sum to 1.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.sharpen()
    array([[ 0., -1.,  0.],
           [-1.,  5., -1.],
           [ 0., -1.,  0.]])
    """
    return identity(3, ndim=ndim) - float(amount) * laplacian(ndim=ndim)


def unsharp_mask(sigma=1.0, amount=1.0, *, size=None, ndim=2, truncate=4.0):
    """Unsharp masking: ``(1 + amount) * identity - amount * gaussian(size, sigma)``.

    Symmetric: the same in both conventions. Coefficients sum to 1. `size` must be odd.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> k = kernels.unsharp_mask(sigma=1.0, amount=0.5, size=5)
    >>> k.shape, round(float(k.sum()), 12)
    ((5, 5), 1.0)
    """
    g = gaussian(size, sigma, ndim=ndim, truncate=truncate)
    if any(k % 2 == 0 for k in g.shape):
        raise ValueError(f"size must be odd along every axis for an unsharp mask; got {size!r}")
    kernel = -float(amount) * g
    kernel[tuple(k // 2 for k in g.shape)] += 1.0 + float(amount)
    return kernel


def emboss(*, convention="convolution"):
    """The classic 3x3 emboss, ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]`` in correlation.

    Applied with `convention` it lights the image from the top left as displayed: the
    output rises where the data increases towards the bottom right.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.emboss(convention="correlation")
    array([[-2., -1.,  0.],
           [-1.,  1.,  1.],
           [ 0.,  1.,  2.]])
    """
    kernel = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    return _oriented(kernel, convention)


def edge_detection(*, ndim=2):
    """Omnidirectional edge detector: -1 everywhere, ``3**ndim - 1`` at the centre.

    Symmetric: the same in both conventions. In 2-D this is Pillow's FIND_EDGES kernel.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.edge_detection()
    array([[-1., -1., -1.],
           [-1.,  8., -1.],
           [-1., -1., -1.]])
    """
    return -laplacian(ndim=ndim, diagonal=True)


def identity(size=1, *, ndim=2, convention="convolution"):
    """The kernel that leaves data unchanged in 'same' mode: a single 1 at the anchor.

    For odd sizes the 1 is at the centre in both conventions; for an even size it sits
    where scipy.signal's 'same' centring puts the anchor, which differs by one sample
    between the two conventions.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.identity(3, ndim=1)
    array([0., 1., 0.])
    >>> kernels.identity(2, ndim=1), kernels.identity(2, ndim=1, convention="correlation")
    (array([1., 0.]), array([0., 1.]))
    """
    ndim = len(size) if np.ndim(size) else _check_ndim(ndim)
    sizes = check_int_tuple(size, "size", ndim, minimum=1)
    check_choice(convention, "convention", CONVENTIONS)
    kernel = np.zeros(sizes)
    kernel[anchor(sizes, convention)] = 1.0
    return kernel


def shift(offset, *, convention="convolution"):
    """A kernel that moves the data by `offset` samples in 'same' mode: ``y[n] = x[n - offset]``.

    Parameters
    ----------
    offset : int or sequence of int
        Shift per axis; positive moves content towards higher indices. A scalar gives a
        1-D kernel.
    convention : {'convolution', 'correlation'}, optional
        Orientation of the returned array.

    Returns
    -------
    kernel : ndarray
        Shape ``2 * abs(offset) + 1`` per axis, with a single 1.

    Examples
    --------
    >>> import kernelfit
    >>> from kernelfit import kernels
    >>> kernels.shift(1)
    array([0., 0., 1.])
    >>> kernelfit.convolve([1, 2, 3, 4], kernels.shift(1))
    array([0., 1., 2., 3.])
    """
    ndim = len(offset) if np.ndim(offset) else 1
    offsets = check_int_tuple(offset, "offset", ndim)
    check_choice(convention, "convention", CONVENTIONS)
    kernel = np.zeros(tuple(2 * abs(d) + 1 for d in offsets))
    sign = 1 if convention == "convolution" else -1
    kernel[tuple(abs(d) + sign * d for d in offsets)] = 1.0
    return kernel


def random(shape, *, rng=None):
    """A kernel of independent standard normal coefficients.

    It has no orientation of its own: whichever convention it is applied with is the one
    a fit should return it in.

    Parameters
    ----------
    shape : int or sequence of int
        Kernel shape (an int gives a 1-D kernel).
    rng : int, numpy.random.Generator or None, optional
        Seed or generator, as numpy.random.default_rng takes.

    Examples
    --------
    >>> from kernelfit import kernels
    >>> kernels.random((2, 3), rng=0).shape
    (2, 3)
    """
    ndim = len(shape) if np.ndim(shape) else 1
    shape = check_int_tuple(shape, "shape", ndim, minimum=1)
    return np.random.default_rng(rng).standard_normal(shape)
