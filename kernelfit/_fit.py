"""fit_kernel: recover a kernel from input/output pairs; validation, problem set-up, dispatch.

The arguments are checked here once; solvers (kernelfit._solvers) receive a FitProblem.
"""

import dataclasses
import numbers
import warnings

import numpy as np

from . import _auto

from ._convolve import check_origin
from ._problem import FitProblem, Pair, expected_shape, extend, infer_mode
from ._result import IdentifiabilityWarning, KernelFit
from ._solvers import METHOD_OPTIONS, SOLVERS, get_solver
from ._validation import (
    CONVENTIONS,
    MODES,
    as_numeric_array,
    check_axis,
    check_boundary,
    check_choice,
    check_int_tuple,
    check_scalar,
    float_dtype,
    saturation_limits,
)

__all__ = ["fit_kernel"]

CHANNELS = ("shared", "separate", "full")


def fit_kernel(input, output, size, *, mode=None, boundary=None, fillvalue=0,
               convention="convolution", method="lstsq", bias=False, channel_axis=None,
               channels="shared", mask=None, saturated="auto", reg=None, rcond=None,
               origin=0, max_size=15, checks=True, optimizer=None, learning_rate=None,
               max_steps=None, rtol=None, gtol=None, dtype=None, seed=None, batch_size=None,
               verbose=None, callback=None):
    r"""Recover the kernel of a linear filter from its input and output.

    Every output sample is a linear function of a window of the input, so the kernel is
    the solution of a least-squares problem with one equation per usable output sample
    and one unknown per kernel coefficient (plus a bias). kernelfit uses every usable
    sample, never only the first ``size**2`` windows, and reports whether the data
    determine the kernel.

    Parameters
    ----------
    input, output : array_like, or sequences of array_like
        The filter's input and output (any real or complex dtype; integer images too).
        Two equal-length lists or tuples of ndarrays are several pairs that share one
        kernel; their equations are stacked.
    size : int or sequence of int
        Kernel shape along every spatial axis (odd, even, rectangular, N-D).
    mode : {None, 'same', 'valid', 'full'}, optional
        Output geometry as in :func:`kernelfit.convolve`. None infers it from the shapes:
        equal means 'same', smaller by ``size - 1`` 'valid', larger by ``size - 1`` 'full'.
    boundary : {None, 'fill', 'constant', 'edge', 'wrap', 'symmetric', 'symm', 'reflect'}
        None uses only the output samples that do not depend on how the input was
        extended (the interior in 'same' mode), so an unknown edge rule cannot bias the
        kernel; a named rule uses every output sample under that rule. 'full' mode
        extends the input with `fillvalue` (zero) unless a rule is named.
    fillvalue : number, optional
        The value beyond the edges for the 'fill' rule.
    convention : {'convolution', 'correlation'}, optional
        The orientation the kernel is returned in (the fit is the same either way).
    method : {'lstsq', 'lstsq-dense', 'lstsq-stats', 'pinv', 'ridge', 'tf'}, optional
        'lstsq': exact least squares by the cheaper exact path, chosen by the size of the
        patch matrix: 'lstsq-dense' (the patch matrix and its SVD, minimum-norm, up to
        64 MB) or 'lstsq-stats' (the exact normal equations from a few FFTs and border-strip
        sums, solved by Cholesky and refined once against exact residuals; large images and
        memmaps, tile by tile in bounded memory). 'pinv': an explicit
        pseudoinverse, discarding singular values below ``rcond * s_max``. 'ridge':
        Tikhonov regularisation with parameter `reg`. 'tf': gradient descent in
        TensorFlow (the optional extra ``kernelfit[tf]``), on a GPU when TensorFlow sees one.
    bias : bool, optional
        Also fit an additive constant, one per output channel (Pillow's EMBOSS adds 128).
    channel_axis : int or None, optional
        The channel axis of `input` (and of `output` if it has one; an output with one
        dimension fewer is a grey output from a colour input).
    channels : {'shared', 'separate', 'full'}, optional
        With a channel axis: 'shared' fits one spatial kernel applied to every channel;
        'separate' one kernel per channel, returned as ``(*size, C)``; 'full' a
        ``(*size, C_in, C_out)`` kernel that mixes channels like a convolution layer. A
        grey output always gives a ``(*size, C_in)`` kernel ('shared' or 'full').
    mask : array_like of bool, or a sequence of them, optional
        True where an output sample may be used; shaped like the output (or its spatial
        axes, for every channel alike).
    saturated : 'auto', bool or (low, high), optional
        'auto' leaves out samples of an integer output at its dtype's limits (clipped,
        e.g. 0 and 255); False keeps every sample; True is 'auto' for any dtype, with the
        output's own minimum and maximum; a pair names the limits.
    reg : float or 'gcv', optional
        Tikhonov parameter for ``method='ridge'`` (``|A k - b|^2 + reg |k|^2``, the bias
        unpenalised), or 'gcv' to choose it by generalised cross-validation.
    rcond : float, optional
        Relative cut-off for ``method='pinv'``; default ``max(n, m) * eps``.
    origin : int or sequence of int, optional
        Anchor shift in 'same' mode, as in :func:`kernelfit.convolve`, for filters that
        centre even kernels differently.
    optimizer : {'cg', 'adam', 'sgd', 'momentum'}, optional
        ``method='tf'``: 'cg' (default) is conjugate gradients with the exact line search a
        quadratic loss allows, restarted every ``n_unknowns`` steps; it converges on badly
        conditioned photographs, where plain 'adam' and 'sgd' stall. The others are
        tf.keras' optimizers ('momentum' is SGD with momentum 0.9).
    learning_rate : float, optional
        ``method='tf'`` with 'adam' (default 0.01), 'sgd' or 'momentum' (default ``1 / L``,
        with L the loss's largest curvature, found by power iteration).
    max_steps : int, optional
        ``method='tf'``: step budget (default 2000 for 'cg', 5000 otherwise).
    rtol, gtol : float, optional
        ``method='tf'``: stop when the loss changes by less than ``rtol`` relative to it,
        or when the gradient norm falls below ``gtol`` times its first value (defaults:
        ``rtol = 10 eps`` of `dtype`; ``gtol`` 1e-10 in float64, 1e-5 in float32).
    dtype : {'float64', 'float32'}, optional
        ``method='tf'``: precision of the optimisation (default float64).
    seed : int, optional
        ``method='tf'``: seeds the choice of mini-batches and the power iteration.
    batch_size : int, optional
        ``method='tf'`` with a stochastic optimizer: pairs per step (default: all).
    verbose : bool, optional
        ``method='tf'``: a progress bar (Keras' Progbar); default only on a terminal.
    callback : callable, optional
        ``method='tf'``: ``callback(step, loss, kernel)`` after every step (kernel in
        `convention`); returning True stops the optimisation.

    Returns
    -------
    fit : KernelFit
        The kernel, its standard errors and the diagnostics; ``fit.predict(input)``
        re-applies it.

    Raises
    ------
    ValueError
        For shapes that fit no mode, a size larger than the data, NaN or infinite values,
        mismatched pairs or masks, unknown options, or no usable samples.
    TypeError
        For arguments of the wrong type.

    Warns
    -----
    IdentifiabilityWarning
        When the data do not determine the kernel: the minimum-norm kernel is returned.

    See Also
    --------
    kernelfit.convolve : The forward model the kernel is fitted for.

    Notes
    -----
    With windows :math:`w_n` of the (extended) input, the fit solves

    .. math:: \min_{k, c} \sum_{n \in \text{usable}} |y_n - w_n \cdot k - c|^2

    from one SVD of the patch matrix :math:`W = U S V^H`: the kernel is
    :math:`V f(S) U^H y` with :math:`f = 1/s` above the rank tolerance (lstsq, pinv) or
    :math:`s / (s^2 + \lambda)` (ridge), and the standard errors are the square roots of
    the diagonal of :math:`\hat\sigma^2 V f(S)^2 V^H`, with :math:`\hat\sigma^2` the
    residual variance. The patch matrix holds only the used windows (a view until then).

    Examples
    --------
    Recover a 3x3 kernel from a random image and its filtered copy:

    >>> import numpy as np
    >>> import kernelfit
    >>> rng = np.random.default_rng(0)
    >>> image = rng.standard_normal((20, 10))
    >>> kernel = np.diag([1.0, 1.0, 1.0])
    >>> fit = kernelfit.fit_kernel(image, kernelfit.convolve(image, kernel), 3)
    >>> fit.kernel.round(10) + 0.0
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    >>> fit.identifiable, fit.n_equations
    (True, 144)
    """
    options = dict(mode=mode, fillvalue=fillvalue, convention=convention, method=method,
                   bias=bias, channel_axis=channel_axis, channels=channels, mask=mask,
                   saturated=saturated, reg=reg, rcond=rcond, optimizer=optimizer,
                   learning_rate=learning_rate, max_steps=max_steps, rtol=rtol, gtol=gtol,
                   dtype=dtype, seed=seed, batch_size=batch_size, verbose=verbose,
                   callback=callback)
    searching = isinstance(size, str) or isinstance(origin, str)
    if isinstance(size, str) and size != "auto":
        raise ValueError(f"size must be an integer, a sequence of integers, or 'auto'; got "
                         f"{size!r}")
    if isinstance(origin, str) and origin != "auto":
        raise ValueError(f"origin must be an integer, a sequence of integers, or 'auto'; got "
                         f"{origin!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) \
            or max_size < 1:
        raise ValueError(f"max_size must be a positive integer; got {max_size!r}")
    if not isinstance(checks, (bool, np.bool_)):
        raise TypeError(f"checks must be True or False; got {checks!r}")
    if boundary is not None and boundary != "auto":
        check_boundary(boundary)
    size_scores = boundary_scores = None
    if searching:
        size, origin, size_scores = _auto.locate(
            _fit_once, input, output, options, size=size, origin=origin, max_size=max_size,
            channel_axis=channel_axis)
    if boundary == "auto":
        fit, boundary_scores = _auto.choose_boundary(
            _fit_once, input, output, options, size=size, origin=origin,
            channel_axis=channel_axis)
    else:
        fit = _fit_once(input, output, size, boundary=boundary, origin=origin, **options)
    if checks:
        _auto.check_model(_fit_once, fit, input, output, options)
    if size_scores is not None or boundary_scores is not None:
        fit = dataclasses.replace(fit, size_scores=size_scores, boundary_scores=boundary_scores)
    return fit


def _fit_once(input, output, size, *, mode, boundary, fillvalue, convention, method, bias,
              channel_axis, channels, mask, saturated, reg, rcond, origin, optimizer,
              learning_rate, max_steps, rtol, gtol, dtype, seed, batch_size, verbose,
              callback):
    """fit_kernel for a given size, origin and edge rule (or none): validate, set up, solve."""
    check_choice(method, "method", tuple(SOLVERS))
    check_choice(convention, "convention", CONVENTIONS)
    if mode is not None:
        check_choice(mode, "mode", MODES)
    pad_mode = None if boundary is None else check_boundary(boundary)
    fillvalue = check_scalar(fillvalue, "fillvalue")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False; got {bias!r}")
    check_choice(channels, "channels", CHANNELS)
    options = _method_options(method, dict(
        reg=reg, rcond=rcond, optimizer=optimizer, learning_rate=learning_rate,
        max_steps=max_steps, rtol=rtol, gtol=gtol, dtype=dtype, seed=seed,
        batch_size=batch_size, verbose=verbose, callback=callback))
    if method == "tf":
        options["convention"] = convention

    inputs, outputs = _as_pairs(input, output)
    masks = _as_masks(mask, len(inputs))
    first_input = as_numeric_array(inputs[0], _name("input", 0, len(inputs)))
    if channel_axis is not None:
        if first_input.ndim < 2:
            raise ValueError(f"input must have at least 2 dimensions with a channel_axis; "
                             f"got shape {first_input.shape}")
        channel_axis = check_axis(channel_axis, first_input.ndim, "channel_axis")
    n_spatial = first_input.ndim - (channel_axis is not None)
    size = check_int_tuple(size, "size", n_spatial, minimum=1)

    pairs, modes, fills, grey_output = [], set(), [], None
    for i, (x, y, m) in enumerate(zip(inputs, outputs, masks)):
        x = first_input if i == 0 else as_numeric_array(x, _name("input", i, len(inputs)))
        y_name = _name("output", i, len(inputs))
        y = as_numeric_array(y, y_name)
        x, y, grey = _channels_last(x, y, channel_axis, n_spatial, i, len(inputs))
        if grey_output is not None and grey != grey_output:
            raise ValueError("every output must have the same channel layout")
        grey_output = grey
        spatial_in, spatial_out = x.shape[:-1], y.shape[:-1]
        if any(k > n for k, n in zip(size, spatial_in)):
            raise ValueError(f"size {size} is larger than the {_name('input', i, len(inputs))}"
                             f" spatial shape {spatial_in}")
        pair_mode = mode or infer_mode(spatial_in, spatial_out, size, y_name)
        if mode is not None and spatial_out != expected_shape(spatial_in, size, mode):
            raise ValueError(f"{y_name} spatial shape {spatial_out} does not fit mode="
                             f"{mode!r}: expected {expected_shape(spatial_in, size, mode)} "
                             f"for input spatial shape {spatial_in} and size {size}")
        modes.add(pair_mode)
        if len(modes) > 1:
            raise ValueError(f"the pairs' shapes imply different modes {sorted(modes)}; pass "
                             f"mode= or give every pair the same geometry")
        m = _mask(m, y.shape, channel_axis, grey, i, len(inputs))
        limits = saturation_limits(saturated, y)
        if pair_mode == "full" and boundary is None:
            rule, rule_pad = "fill", "constant"
        else:
            rule, rule_pad = boundary, pad_mode
        origin_checked = check_origin(origin, size, pair_mode, convention)
        maps, crop = extend(spatial_in, size, pair_mode, rule, rule_pad, convention,
                            origin_checked)
        fills.append(rule_pad == "constant")
        pairs.append(Pair(x, maps, fillvalue, y[crop], None if m is None else m[crop], limits,
                          size[0]))
    (mode,) = modes
    if mode == "full" and boundary is None:
        boundary = "fill"

    n_in = pairs[0].source.shape[-1]
    n_out = pairs[0].output.shape[-1]
    for pair in pairs[1:]:
        if pair.source.shape[-1] != n_in or pair.output.shape[-1] != n_out:
            raise ValueError("every pair must have the same number of channels")
    layout = _layout(channel_axis, channels, grey_output, n_in, n_out)
    kernel_shape = {"shared": size, "separate": size + (n_out,),
                    "full": size + (n_in, n_out)}[layout]
    bias_shape = (n_in,) if layout == "shared" else (n_out,)
    dtype = np.result_type(*(float_dtype(p.source.dtype) for p in pairs),
                           *(float_dtype(p.output.dtype) for p in pairs),
                           *([fillvalue] if any(fills) else []))
    total = n_masked = 0
    for pair in pairs:
        pair.dtype = dtype
        used, masked = _count_usable(pair)
        total, n_masked = total + used, n_masked + masked
    if total == 0:  # size <= input leaves every geometry at least one sample
        raise ValueError(f"no output samples left to fit: all {n_masked} usable samples are "
                         f"masked out or saturated (see mask= and saturated=)")
    problem = FitProblem(pairs=pairs, size=size, layout=layout, n_in=n_in, n_out=n_out,
                         bias=bool(bias), dtype=np.dtype(dtype), kernel_shape=kernel_shape,
                         bias_shape=bias_shape, n_masked=n_masked)

    estimate = get_solver(method)(problem, **options)
    return _result(estimate, problem, method=method, mode=mode, boundary=boundary,
                   convention=convention, fillvalue=fillvalue, origin=origin_checked,
                   channel_axis=channel_axis, channels=channels, grey_output=grey_output)


def _name(what, i, n):
    return what if n == 1 else f"{what}[{i}]"


def _method_options(method, given):
    """The options `method` takes, validated; an option meant for another method is an error."""
    for name, value in given.items():
        if value is not None and name not in METHOD_OPTIONS[method]:
            users = [m for m, names in METHOD_OPTIONS.items() if name in names]
            raise ValueError(f"{name} is used only by method={users[0]!r}; got "
                             f"method={method!r}")
    if method == "ridge":
        reg = given["reg"]
        if reg is None:
            raise ValueError("method='ridge' needs reg: a non-negative number or 'gcv'")
        if reg != "gcv":
            reg = check_scalar(reg, "reg", complex_ok=False)
            if reg < 0:
                raise ValueError(f"reg must be non-negative or 'gcv'; got {reg!r}")
        return {"reg": reg}
    if method == "pinv":
        rcond = given["rcond"]
        if rcond is not None:
            rcond = check_scalar(rcond, "rcond", complex_ok=False)
            if not 0 <= rcond < 1:
                raise ValueError(f"rcond must be in [0, 1); got {rcond!r}")
        return {"rcond": rcond}
    if method == "tf":
        from ._tf import check_options
        return check_options(**{name: given[name] for name in METHOD_OPTIONS["tf"]})
    return {}


def _is_pair_list(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(item, np.ndarray) for item in value)


def _as_pairs(input, output):
    """Two lists of arrays: one pair, or several that share the kernel."""
    several_in, several_out = _is_pair_list(input), _is_pair_list(output)
    if several_in != several_out:
        which = "input" if several_in else "output"
        raise ValueError(f"{which} is a sequence of ndarrays (several pairs) but the other is "
                         f"not; pass equal-length sequences of ndarrays for several pairs")
    if not several_in:
        return [input], [output]
    if len(input) != len(output):
        raise ValueError(f"input and output must have the same number of pairs; got "
                         f"{len(input)} inputs and {len(output)} outputs")
    return list(input), list(output)


def _as_masks(mask, n_pairs):
    if mask is None:
        return [None] * n_pairs
    if n_pairs == 1:
        return [mask]
    if not (isinstance(mask, (list, tuple)) and len(mask) == n_pairs):
        raise ValueError(f"mask must be a sequence of {n_pairs} masks, one per pair")
    return list(mask)


def _channels_last(x, y, channel_axis, n_spatial, i, n):
    """Move channels last (adding a length-1 axis without channels); flag a grey output."""
    y_name = _name("output", i, n)
    if channel_axis is None:
        if y.ndim != x.ndim:
            raise ValueError(f"{y_name} must have as many dimensions as input ({x.ndim}) "
                             f"without a channel_axis; got shape {y.shape}")
        return x[..., np.newaxis], y[..., np.newaxis], False
    if x.ndim != n_spatial + 1:
        raise ValueError(f"{_name('input', i, n)} must have {n_spatial + 1} dimensions like "
                         f"the first input; got shape {x.shape}")
    x = np.moveaxis(x, channel_axis, -1)
    if y.ndim == x.ndim:
        return x, np.moveaxis(y, channel_axis, -1), False
    if y.ndim == n_spatial:
        return x, y[..., np.newaxis], True
    raise ValueError(f"{y_name} must have {x.ndim} dimensions (with channels) or {n_spatial} "
                     f"(grey) for an input of shape {x.shape[:-1]} with channels; got shape "
                     f"{y.shape}")


def _mask(mask, shape, channel_axis, grey, i, n):
    """The mask as a boolean view, channels last, shaped like the output or its spatial axes."""
    if mask is None:
        return None
    name = "mask" if n == 1 else f"mask[{i}]"
    mask = np.asarray(mask)
    given_shape = mask.shape
    if mask.dtype != bool:
        raise TypeError(f"{name} must be a boolean array; got dtype {mask.dtype}")
    if channel_axis is not None and not grey and mask.ndim == len(shape):
        mask = np.moveaxis(mask, channel_axis, -1)
    elif mask.ndim == len(shape) - 1:
        mask = mask[..., np.newaxis]
    if mask.shape not in (shape, shape[:-1] + (1,)):
        raise ValueError(f"{name} has shape {given_shape}; expected the "
                         f"output's shape or its spatial shape")
    return mask


def _count_usable(pair):
    """Samples the fit may use, and those left out by the mask or as saturated."""
    used = int(pair.scan[0].sum())
    return used, int(np.prod(pair.output.shape)) - used


def _layout(channel_axis, channels, grey_output, n_in, n_out):
    if channel_axis is None:
        return "shared"
    if grey_output:
        if channels == "separate":
            raise ValueError("channels='separate' needs an output with channels; a grey "
                             "output from a colour input is fitted with a (*size, C_in) "
                             "kernel (channels='shared' or 'full')")
        return "full"
    if channels != "full" and n_in != n_out:
        raise ValueError(f"channels={channels!r} needs as many output channels as input "
                         f"channels; got {n_in} in and {n_out} out (use channels='full')")
    return channels


def _result(estimate, problem, *, method, mode, boundary, convention, fillvalue, origin,
            channel_axis, channels, grey_output):
    spatial = tuple(range(len(problem.size)))
    kernel, stderr = estimate.kernel, estimate.stderr
    if convention == "convolution":
        kernel, stderr = np.flip(kernel, axis=spatial), np.flip(stderr, axis=spatial)
    bias, bias_stderr = estimate.bias, estimate.bias_stderr
    if grey_output:
        kernel, stderr = kernel[..., 0], stderr[..., 0]
    if bias is not None and (channel_axis is None or grey_output):
        bias, bias_stderr = bias.reshape(-1)[0].item(), float(bias_stderr.reshape(-1)[0])
    ss_tot = estimate.ss_tot
    r2 = 1.0 - estimate.ss_res / ss_tot if ss_tot > 0 else (
        1.0 if estimate.ss_res == 0 else 0.0)
    fit = KernelFit(
        kernel=np.ascontiguousarray(kernel), size=problem.size, bias=bias,
        stderr=np.ascontiguousarray(stderr), bias_stderr=bias_stderr, method=method,
        mode=mode, boundary=boundary, convention=convention, fillvalue=fillvalue,
        origin=origin, channel_axis=channel_axis,
        channels=None if channel_axis is None else ("full" if grey_output else channels),
        residual_rms=float(np.sqrt(estimate.ss_res / estimate.n_equations)), r2=float(r2),
        n_equations=estimate.n_equations, n_unknowns=estimate.n_unknowns,
        rank=estimate.rank, condition_number=float(estimate.condition_number),
        n_masked=problem.n_masked, reg=estimate.reg, loss_history=estimate.loss_history,
        n_steps=estimate.n_steps, stop_reason=estimate.stop_reason, device=estimate.device)
    if not fit.identifiable:
        advice = ("a larger or more textured image, more pairs" if fit.n_equations
                  >= fit.n_unknowns else "more output samples (a larger image, more pairs)")
        warnings.warn(
            f"the data determine only {fit.rank} independent combinations of the "
            f"{fit.n_unknowns} unknowns ({fit.n_equations} equations): the kernel is not "
            f"identifiable and the minimum-norm solution is returned. {advice.capitalize()}"
            f" or a smaller size would help.", IdentifiabilityWarning, stacklevel=4)
    return fit

