"""Synthetic filter pairs made the way real pipelines make them: filter, offset, noise, 8-bit rounding.

Use it to test a fit against a known kernel, or to see how much noise and quantisation cost.
"""

import numpy as np

from ._convolve import convolve
from ._validation import check_choice, check_scalar

__all__ = ["quantize", "synthesize"]

ROUNDINGS = ("half_even", "half_up", "floor")


def quantize(data, dtype, *, rounding="half_even"):
    """Round and clip real data to an integer dtype, as image writers do.

    Parameters
    ----------
    data : array_like
        Real data.
    dtype : integer dtype
        Target type, e.g. ``np.uint8`` or ``np.uint16``; values are clipped to its range.
    rounding : {'half_even', 'half_up', 'floor'}, optional
        'half_even' is numpy.rint (OpenCV's saturate_cast); 'half_up' is ``floor(x + 0.5)``
        (Pillow's filters); 'floor' truncates towards minus infinity.

    Returns
    -------
    out : ndarray of `dtype`

    Examples
    --------
    >>> import numpy as np
    >>> from kernelfit.synth import quantize
    >>> quantize([-3.0, 0.5, 1.5, 254.5, 300.0], np.uint8)
    array([  0,   0,   2, 254, 255], dtype=uint8)
    >>> quantize([0.5, 1.5], np.uint8, rounding="half_up")
    array([1, 2], dtype=uint8)
    >>> quantize([2.0**63, -1e300], np.int64)  # saturated exactly, even where float64 cannot
    array([ 9223372036854775807, -9223372036854775808])
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"dtype must be an integer dtype such as uint8 or uint16; got {dtype}")
    check_choice(rounding, "rounding", ROUNDINGS)
    data = np.asarray(data)
    if data.dtype.kind == "c":
        raise TypeError("data must be real to be rounded to an integer dtype; got complex data")
    rounded = {"half_even": np.rint, "floor": np.floor,
               "half_up": lambda a: np.floor(a + 0.5)}[rounding](data.astype(np.float64))
    info = np.iinfo(dtype)
    low, high = float(info.min), float(info.max)
    if high <= info.max:
        return np.clip(rounded, low, high).astype(dtype)
    # 64-bit: float(2**63 - 1) is 2**63, which does not fit; clip to the largest float64
    # that does, then saturate what lies beyond it (nothing lies between the two floats)
    high = np.nextafter(high, 0.0)
    saturated = np.where(rounded > high, info.max, np.clip(rounded, low, high).astype(dtype))
    return saturated.astype(dtype, copy=False)[()]  # [()]: a scalar for scalar data, as above


def synthesize(image, kernel, *, mode="same", boundary="fill", fillvalue=0,
               convention="convolution", channel_axis=None, origin=0, offset=0.0, noise=0.0,
               dtype=None, rounding="half_even", rng=None):
    """Filter `image` with `kernel`, then add an offset and noise, then round and clip.

    The order is that of a real pipeline: ``convolve`` (with every option of
    :func:`kernelfit.convolve`), ``+ offset``, ``+ N(0, noise**2)``, then
    :func:`quantize` when `dtype` is an integer type.

    Parameters
    ----------
    image, kernel : array_like
        As for :func:`kernelfit.convolve`.
    mode, boundary, fillvalue, convention, channel_axis, origin
        As for :func:`kernelfit.convolve`.
    offset : float, optional
        Constant added after filtering (Pillow's EMBOSS adds 128).
    noise : float, optional
        Standard deviation of additive white Gaussian noise, in output units; complex
        output gets complex noise of that standard deviation.
    dtype : dtype or None, optional
        None keeps the floating result; an integer dtype rounds and clips to it.
    rounding : {'half_even', 'half_up', 'floor'}, optional
        How to round to an integer `dtype` (see :func:`quantize`).
    rng : int, numpy.random.Generator or None, optional
        Seed or generator for the noise.

    Returns
    -------
    output : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from kernelfit import kernels, synth
    >>> image = np.array([[0, 0, 0, 0], [0, 90, 90, 0], [0, 90, 90, 0], [0, 0, 0, 0]])
    >>> synth.synthesize(image, kernels.box(2), offset=0.4, dtype=np.uint8)
    array([[ 0,  0,  0,  0],
           [ 0, 23, 45, 23],
           [ 0, 45, 90, 45],
           [ 0, 23, 45, 23]], dtype=uint8)
    """
    offset = check_scalar(offset, "offset")
    noise = check_scalar(noise, "noise", complex_ok=False)
    if noise < 0:
        raise ValueError(f"noise must be a non-negative standard deviation; got {noise!r}")
    check_choice(rounding, "rounding", ROUNDINGS)
    output = convolve(image, kernel, mode=mode, boundary=boundary, fillvalue=fillvalue,
                      convention=convention, channel_axis=channel_axis, origin=origin)
    output = output + offset
    if noise:
        rng = np.random.default_rng(rng)
        if np.iscomplexobj(output):
            output = output + noise / np.sqrt(2) * (rng.standard_normal(output.shape)
                                                   + 1j * rng.standard_normal(output.shape))
        else:
            output = output + noise * rng.standard_normal(output.shape)
    if dtype is not None:
        output = quantize(output, dtype, rounding=rounding)
    return output
