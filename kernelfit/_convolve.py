"""The forward model: apply a kernel to N-D data with a stated geometry, edge rule and orientation.

Every kernel kernelfit recovers is checked against this model, and synthetic data is made with it.
"""

import numpy as np

from ._validation import (
    CONVENTIONS,
    MODES,
    as_float_array,
    check_axis,
    check_boundary,
    check_choice,
    check_int_tuple,
    check_scalar,
)

__all__ = ["convolve", "correlate"]


def convolve(image, kernel, *, mode="same", boundary="fill", fillvalue=0,
             convention="convolution", channel_axis=None, origin=0):
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

        - spatial only, ``(K1, ..., KD)``: every channel is filtered alike;
        - ``(K1, ..., KD, C)``: each channel has its own kernel and the results are summed
          into one output without a channel axis (an RGB "3-D convolution");
        - ``(K1, ..., KD, C, C_out)``: a convolution layer; the output has ``C_out``
          channels on `channel_axis`.
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

    if channel_axis is None:
        spatial_ndim = image.ndim
        layout = "spatial"
        if kernel.ndim != spatial_ndim:
            raise ValueError(f"kernel must have as many dimensions as image ({image.ndim}) "
                             f"when channel_axis is None; got kernel shape {kernel.shape}")
    else:
        if image.ndim < 2:
            raise ValueError(f"image must have at least 2 dimensions with a channel_axis; "
                             f"got shape {image.shape}")
        channel_axis = check_axis(channel_axis, image.ndim, "channel_axis")
        spatial_ndim = image.ndim - 1
        n_channels = image.shape[channel_axis]
        layout = {0: "spatial", 1: "sum", 2: "layer"}.get(kernel.ndim - spatial_ndim)
        if layout is None:
            raise ValueError(
                f"kernel must have {spatial_ndim} (spatial), {spatial_ndim + 1} (spatial, "
                f"channels) or {spatial_ndim + 2} (spatial, C_in, C_out) dimensions for an "
                f"image with {spatial_ndim} spatial axes; got kernel shape {kernel.shape}")
        if layout != "spatial" and kernel.shape[spatial_ndim] != n_channels:
            raise ValueError(f"kernel axis {spatial_ndim} has length "
                             f"{kernel.shape[spatial_ndim]} but image has {n_channels} channels "
                             f"on channel_axis={channel_axis}")

    spatial_kernel_shape = kernel.shape[:spatial_ndim]
    spatial_image_shape = (image.shape if channel_axis is None else
                           tuple(n for i, n in enumerate(image.shape) if i != channel_axis))
    if mode == "valid" and any(k > n for k, n in zip(spatial_kernel_shape,
                                                      spatial_image_shape)):
        raise ValueError(f"kernel of spatial shape {spatial_kernel_shape} is larger than the "
                         f"image's spatial shape {spatial_image_shape}; mode='valid' needs a "
                         f"kernel no larger than the image along every axis")
    origin = check_origin(origin, spatial_kernel_shape, mode, convention)

    pad_width = padding(spatial_kernel_shape, mode, convention, origin)
    dtype = np.result_type(image.dtype, kernel.dtype,
                           fillvalue if pad_mode == "constant" else 0)
    image, kernel = image.astype(dtype, copy=False), kernel.astype(dtype, copy=False)
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, -1)
    output = _filter_padded(image, kernel, pad_width, pad_mode, fillvalue, convention,
                            layout)
    if channel_axis is not None and layout != "sum":
        output = np.moveaxis(output, -1, channel_axis)
    return output.astype(dtype, copy=False)


def correlate(image, kernel, *, mode="same", boundary="fill", fillvalue=0, channel_axis=None,
              origin=0):
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
                    convention="correlation", channel_axis=channel_axis, origin=origin)


def check_origin(origin, kernel_shape, mode, convention):
    """Validate `origin` against the kernel shape and mode; return a tuple of ints."""
    origin = check_int_tuple(origin, "origin", len(kernel_shape))
    if mode != "same":
        if any(origin):
            raise ValueError(f"origin must be 0 for mode={mode!r}; only 'same' has an anchor "
                             f"to shift; got origin={origin}")
        return origin
    for o, k in zip(origin, kernel_shape):
        # Correlation anchors at k // 2; convolution mirrors both the anchor and the shift.
        low, high = (-(k // 2), (k - 1) // 2) if convention == "correlation" else (
            -((k - 1) // 2), k // 2)
        if not low <= o <= high:
            raise ValueError(f"origin={origin} is out of range for a kernel of shape "
                             f"{tuple(kernel_shape)} with convention={convention!r}: each "
                             f"entry must lie between {low} and {high} for length {k}")
    return origin


def padding(kernel_shape, mode, convention, origin):
    """Input extension per spatial axis, ``[(before, after), ...]``, that makes 'valid' give `mode`.

    Every geometry is computed as a 'valid' filtering of the extended input: 'full' extends
    by ``K - 1`` on both sides; 'same' by ``K // 2`` before and ``(K - 1) // 2`` after in
    correlation orientation (scipy.signal's centring), moved by `origin`.
    """
    if mode == "valid":
        return [(0, 0)] * len(kernel_shape)
    if mode == "full":
        return [(k - 1, k - 1) for k in kernel_shape]
    sign = 1 if convention == "correlation" else -1
    return [(k // 2 + sign * o, (k - 1) // 2 - sign * o) for k, o in zip(kernel_shape, origin)]


def anchor(kernel_shape, convention, origin=None):
    """The kernel index over the output sample in 'same' mode, per axis.

    scipy.signal's centring: ``K // 2`` in correlation orientation, ``(K - 1) // 2`` in
    convolution orientation, moved by `origin` (as `padding` extends the input).
    """
    origin = origin or (0,) * len(kernel_shape)
    return tuple((k // 2 if convention == "correlation" else (k - 1) // 2) + o
                 for k, o in zip(kernel_shape, origin))


def interior(shape, size, convention, origin):
    """Slices of a 'same'-mode output of spatial `shape` whose samples do not depend on the
    edge rule: those whose window lies inside the input."""
    pads = padding(size, "same", convention, origin)
    return tuple(slice(before, n - after) for (before, after), n in zip(pads, shape))


def _filter_padded(image, kernel, pad_width, pad_mode, fillvalue, convention, layout):
    """Extend the spatial axes of `image`, then filter in 'valid' geometry with scipy.

    `image` has its channels (if any) on the last axis. scipy.signal.convolve chooses the
    direct or FFT method by size, so there is no Python loop over pixels.
    """
    n_spatial = len(pad_width)
    channel_pad = [(0, 0)] * (image.ndim - n_spatial)
    extra = {"constant_values": fillvalue} if pad_mode == "constant" else {}
    if any(before or after for before, after in pad_width):
        image = np.pad(image, list(pad_width) + channel_pad, mode=pad_mode, **extra)
    spatial = tuple(range(n_spatial))
    # scipy convolves: flip a correlation kernel so that the result is the wanted one.
    if convention == "correlation":
        kernel = np.flip(kernel, axis=spatial)

    import scipy.signal  # imported here: it takes most of a second to load

    def valid(k):
        return scipy.signal.convolve(image, k, mode="valid")

    if layout == "spatial":
        if image.ndim > n_spatial:  # the same kernel for every channel
            return valid(kernel[..., np.newaxis])
        return valid(kernel)
    # Channel axes are summed, never flipped: reverse them so scipy's flip undoes it.
    if layout == "sum":
        return valid(kernel[..., ::-1])[..., 0]
    return np.stack([valid(kernel[..., ::-1, c])[..., 0] for c in range(kernel.shape[-1])],
                    axis=-1)
