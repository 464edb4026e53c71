"""The forward model: apply a kernel to N-D data with a stated geometry, edge rule and orientation.

Every kernel kernelfit recovers is checked against this model, and synthetic data is made with it.
"""

import numpy as np

from ._geometry import block_maps, check_origin, region, support_for
from ._operator import LAYOUTS, Operator, gather
from ._validation import (
    CONVENTIONS,
    MODES,
    as_float_array,
    check_axis,
    check_boundary,
    check_choice,
    check_scalar,
)

__all__ = ["convolve", "correlate"]


def convolve(image, kernel, *, mode="same", boundary="fill", fillvalue=0,
             convention="convolution", channel_axis=None, channels=None, origin=0):
    r"""Apply a kernel to N-D data: convolution (kernel flipped) or correlation.

    Parameters
    ----------
    image : (N1, ..., ND) array_like
        Input data: a 1-D signal, a 2-D image, a 3-D volume, ..., real or complex. Integer
        and boolean data are computed in float64, float16 in float32. With `channel_axis`,
        one of its axes holds channels.
    kernel : (K1, ..., KD) or (K1, ..., KD, C) or (K1, ..., KD, C_in, C_out) array_like
        The kernel, of any shape along each spatial axis (odd, even, rectangular). The
        channel layouts are described under `channel_axis`.
    mode : {'same', 'full', 'valid'}, optional
        Output geometry, exactly as in :func:`scipy.signal.convolve`: 'full' has
        ``N + K - 1`` samples per axis, 'same' has ``N`` (centred as scipy.signal does for
        even kernels too), 'valid' has ``N - K + 1`` (every output sample sees only input
        samples; the kernel must not be larger than the image).
    boundary : {'fill', 'constant', 'edge', 'wrap', 'symmetric', 'symm', 'reflect'}, optional
        How the input is extended beyond its edges where the output needs it ('same' and
        'full'; 'valid' never does). See the table in the Notes.
    fillvalue : number, optional
        The value beyond the edges for ``boundary='fill'`` (or 'constant').
    convention : {'convolution', 'correlation'}, optional
        'convolution' flips the kernel (numpy.convolve, scipy.signal.convolve);
        'correlation' does not (cv2.filter2D, tf.nn.conv2d, scipy.ndimage.correlate).
        Complex kernels are never conjugated.
    channel_axis : int or None, optional
        None: every axis of `image` is spatial. An int names the channel axis of `image`
        (C channels); then the kernel may be

        - spatial only, ``(K1, ..., KD)``: every channel is filtered alike ('shared');
        - ``(K1, ..., KD, C)``: each channel has its own kernel, and the results are either
          summed into one output without a channel axis (an RGB "3-D convolution",
          'full') or kept apart, one output channel per input channel ('separate');
        - ``(K1, ..., KD, C, C_out)``: a convolution layer ('full'); the output has
          ``C_out`` channels on `channel_axis`.
    channels : {None, 'shared', 'separate', 'full'}, optional
        With a channel axis, the layout of the kernel, in :func:`kernelfit.fit_kernel`'s
        vocabulary; None infers it from the kernel's dimensions, reading a
        ``(K1, ..., KD, C)`` kernel as 'full' (channels summed). ``channels='separate'``
        filters channel ``c`` with ``kernel[..., c]``, as a fit with that layout does.
    origin : int or sequence of int, optional
        Shifts the anchor in 'same' mode, per spatial axis, as `origin` in
        :func:`scipy.ndimage.correlate`: a positive origin moves the output towards lower
        indices. For convolution the shift is mirrored with the kernel, so that
        ``convolve(x, k, origin=o) == correlate(x, flip(k), origin=-o)`` always holds.
        Must be 0 for 'full' and 'valid'.

    Returns
    -------
    output : ndarray
        The filtered data, floating or complex. Spatial axes have the size `mode` gives;
        the channel axis, if any, is where it was in `image` (absent when the kernel sums
        the channels).

    Raises
    ------
    ValueError
        For an unknown `mode`, `boundary` or `convention`, a kernel with the wrong number
        of dimensions or channels, a kernel larger than the image in 'valid' mode, NaN or
        infinite values, an out-of-range `channel_axis` or `origin`.
    TypeError
        For non-numeric data or arguments of the wrong type.

    See Also
    --------
    correlate : The same with ``convention='correlation'``.
    kernelfit.synth.synthesize : Filter, then add noise, an offset and 8-bit rounding.

    Notes
    -----
    With ``convention='convolution'`` and ``mode='full'`` the output is

    .. math:: y[n] = \sum_m x[n - m]\, k[m],

    with ``convention='correlation'`` it is :math:`y[n] = \sum_m x[n + m - (K - 1)]\, k[m]`;
    'same' and 'valid' are slices of 'full' exactly as in scipy.signal. Samples of
    :math:`x` outside the image come from the boundary rule:

    ==================  =============================  ==================  ==================
    boundary            extension of ``a b c d``       OpenCV              scipy.ndimage mode
    ==================  =============================  ==================  ==================
    'fill', 'constant'  ``v v v v | a b c d | v v v``  BORDER_CONSTANT     'constant'
    'edge'              ``a a a a | a b c d | d d d``  BORDER_REPLICATE    'nearest'
    'wrap'              ``a b c d | a b c d | a b c``  BORDER_WRAP         'wrap'
    'symmetric', 'symm' ``d c b a | a b c d | d c b``  BORDER_REFLECT      'reflect'
    'reflect'           ``c d c b | a b c d | c b a``  BORDER_REFLECT_101  'mirror'
    ==================  =============================  ==================  ==================

    (``v`` is `fillvalue`. OpenCV's default, BORDER_DEFAULT, is BORDER_REFLECT_101.)

    How other tools orient a kernel, and how to reproduce each with kernelfit in 'same'
    mode (``K`` is the kernel as you would pass it to that tool):

    ================================  ===================================================
    tool                              kernelfit equivalent
    ================================  ===================================================
    numpy.convolve, scipy.signal      ``convolve(x, K)``
    .convolve / convolve2d /
    fftconvolve
    scipy.signal.correlate            ``correlate(x, K.conj())`` (scipy conjugates)
    scipy.signal.correlate2d          ``correlate(x, K.conj())`` for odd sizes; along an
                                      even axis it anchors one sample earlier: use
                                      ``origin=-1`` there
    scipy.ndimage.correlate           ``correlate(x, K, origin=o)``
    scipy.ndimage.convolve            ``convolve(x, K, origin=o)`` for odd sizes; along an
                                      even axis use ``origin=o + 1``
    cv2.filter2D, tf.nn.conv2d,       ``correlate(x, K)``
    torch conv2d
    PIL.ImageFilter.Kernel            ``convolve(x, K[:, ::-1])``: convolution down the
                                      rows, correlation along them (found with an
                                      impulse image)
    ================================  ===================================================

    Examples
    --------
    The 1-D example, in numpy.convolve's three modes:

    >>> import numpy as np
    >>> import kernelfit
    >>> x = [1, 3, 5, 7, 9, 11, 13]
    >>> kernelfit.convolve(x, [2, 3, 6, 8], mode="full")
    array([  2.,   9.,  25.,  55.,  93., 131., 169., 177., 166., 104.])
    >>> kernelfit.convolve(x, [2, 4, 6, 8], mode="same")
    array([ 10.,  28.,  60., 100., 140., 180., 190.])
    >>> kernelfit.convolve(x, [2, 4, 6, 8], mode="valid")
    array([ 60., 100., 140., 180.])

    Edge rules matter in 'same' mode:

    >>> kernelfit.convolve([1, 2, 3], [1, 1, 1], boundary="edge")
    array([4., 6., 8.])
    >>> kernelfit.convolve([1, 2, 3], [1, 1, 1], boundary="wrap")
    array([6., 6., 6.])

    Correlation does not flip the kernel:

    >>> kernelfit.correlate([0, 1, 0, 0], [1, 2, 3])
    array([3., 2., 1., 0.])
    """
    image = as_float_array(image, "image")
    kernel = as_float_array(kernel, "kernel")
    check_choice(mode, "mode", MODES)
    pad_mode = check_boundary(boundary)
    fillvalue = check_scalar(fillvalue, "fillvalue")
    check_choice(convention, "convention", CONVENTIONS)
    if channels is not None:
        check_choice(channels, "channels", LAYOUTS)
    if channel_axis is None:
        if channels is not None:
            raise ValueError(f"channels={channels!r} needs a channel_axis; without one every "
                             f"axis of image is spatial")
        if kernel.ndim != image.ndim:
            raise ValueError(f"kernel must have as many dimensions as image ({image.ndim}) "
                             f"when channel_axis is None; got kernel shape {kernel.shape}")
        spatial_ndim, layout, n_in, n_out = image.ndim, "shared", 1, 1
        image = image[..., np.newaxis]
    else:
        if image.ndim < 2:
            raise ValueError(f"image must have at least 2 dimensions with a channel_axis; "
                             f"got shape {image.shape}")
        channel_axis = check_axis(channel_axis, image.ndim, "channel_axis")
        spatial_ndim = image.ndim - 1
        n_in = image.shape[channel_axis]
        layout, n_out = _kernel_layout(kernel, spatial_ndim, n_in, channels, channel_axis)
        image = np.moveaxis(image, channel_axis, -1)

    size = kernel.shape[:spatial_ndim]
    spatial_shape = image.shape[:-1]
    if mode == "valid" and any(k > n for k, n in zip(size, spatial_shape)):
        raise ValueError(f"kernel of spatial shape {size} is larger than the image's spatial "
                         f"shape {spatial_shape}; mode='valid' needs a kernel no larger than "
                         f"the image along every axis")
    origin = check_origin(origin, size, mode, convention)
    dtype = np.result_type(image.dtype, kernel.dtype,
                           fillvalue if pad_mode == "constant" else 0)
    support = support_for(size, mode, convention, origin)
    maps = block_maps(spatial_shape, support, region(spatial_shape, support, mode, pad_mode),
                      pad_mode)
    block = gather(image, maps, fillvalue, dtype)[np.newaxis]
    if convention == "convolution":  # the operator correlates: flip the spatial axes
        kernel = np.flip(kernel, axis=tuple(range(spatial_ndim)))
    grey = layout == "full" and kernel.ndim == spatial_ndim + 1  # channels summed to one
    if grey:
        kernel = kernel[..., np.newaxis]
    output = Operator(size, layout, n_in, n_out).on(block).forward(kernel.astype(dtype))[0]
    if channel_axis is None or grey:
        output = output[..., 0]
    else:
        output = np.moveaxis(output, -1, channel_axis)
    return output.astype(dtype, copy=False)


def correlate(image, kernel, *, mode="same", boundary="fill", fillvalue=0, channel_axis=None,
              channels=None, origin=0):
    """Apply a kernel without flipping it: ``convolve(..., convention='correlation')``.

    Parameters and returns are those of :func:`convolve`. The kernel is not conjugated
    (unlike :func:`scipy.signal.correlate`), as in :func:`scipy.ndimage.correlate` and
    cv2.filter2D.

    Examples
    --------
    >>> import kernelfit
    >>> kernelfit.correlate([1, 2, 4, 8], [-1, 0, 1], mode="valid")
    array([3., 6.])
    """
    return convolve(image, kernel, mode=mode, boundary=boundary, fillvalue=fillvalue,
                    convention="correlation", channel_axis=channel_axis, channels=channels,
                    origin=origin)


def _kernel_layout(kernel, spatial_ndim, n_channels, channels, channel_axis):
    """The layout ('shared', 'separate', 'full') of a kernel for an image with channels, and
    the number of output channels."""
    extra = kernel.ndim - spatial_ndim
    if extra not in (0, 1, 2):
        raise ValueError(
            f"kernel must have {spatial_ndim} (spatial), {spatial_ndim + 1} (spatial, "
            f"channels) or {spatial_ndim + 2} (spatial, C_in, C_out) dimensions for an image "
            f"with {spatial_ndim} spatial axes; got kernel shape {kernel.shape}")
    if extra and kernel.shape[spatial_ndim] != n_channels:
        raise ValueError(f"kernel axis {spatial_ndim} has length {kernel.shape[spatial_ndim]} "
                         f"but image has {n_channels} channels on channel_axis={channel_axis}")
    inferred = {0: "shared", 1: "full", 2: "full"}[extra]
    layout = channels or inferred
    accepted = {"shared": 0, "separate": 1, "full": (1, 2)}[layout]
    if extra not in np.atleast_1d(accepted):
        shapes = {"shared": "spatial only, (K1, ..., KD)",
                  "separate": "(K1, ..., KD, C)",
                  "full": "(K1, ..., KD, C) or (K1, ..., KD, C, C_out)"}[layout]
        raise ValueError(f"channels={layout!r} needs a kernel {shapes}; got kernel shape "
                         f"{kernel.shape}")
    n_out = {"shared": n_channels, "separate": n_channels,
             "full": kernel.shape[-1] if extra == 2 else 1}[layout]
    return layout, n_out
