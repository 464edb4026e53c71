"""fit_kernel: recover a kernel from input/output pairs, one stage after another.

prepare (check every argument once) -> statistics (one pass over the pixels) -> search (size,
placement, edge rule) -> solve (one more pass: the residual) -> diagnose -> result.
"""

import dataclasses

import numpy as np

from ._compression import clustered_errors, jpeg_grid, simplest_design
from ._constrain import solve_constrained
from ._diagnose import diagnose
from ._prepare import prepare
from ._prior import solve_prior
from ._reweight import sandwich_errors, solve_robust, solve_with_noise
from ._result import KernelFit
from ._search import choose, plan
from ._solve import get_solver
from ._statistics import available_memory, first_pass, gram_bytes, statistics_for

__all__ = ["fit_kernel"]


def fit_kernel(input, output, size, *, mode=None, boundary=None, fillvalue=0,
               convention="convolution", origin=0, bias=False, channel_axis=None,
               channels="shared", mask=None, saturated="auto", method="lstsq", options=None,
               max_size=15, checks=True, progress=False, constraints=None, weights=None,
               noise=None, gain=None, read_noise=None, loss="squared", prior=None,
               errors="model"):
    r"""Recover the kernel of a linear filter from its input and output.

    Every output sample is a linear function of a window of the input, so the kernel is
    the solution of a least-squares problem with one equation per usable output sample
    and one unknown per kernel coefficient (plus a bias). kernelfit uses every usable
    sample, never only the first ``size**2`` windows, and reports whether the data
    determine the kernel. Whatever the input's dtype (integers, float32, float64), the fit
    is computed in float64 (complex128 for complex data).

    Parameters
    ----------
    input, output : array_like, or sequences of array_like
        The filter's input and output (any real or complex dtype). Memmaps and arrays read
        by slicing (zarr, h5py) are read tile by tile, never whole. Two equal-length lists
        or tuples of ndarrays are several pairs that share one kernel. Dask arrays (or
        lists of them) are fitted on Dask: a task per batch of tiles reads its blocks from
        the arrays' chunks, whatever they are, and returns only statistics, summed in a
        fixed order, so the fit agrees with the in-memory one to rounding (see the README,
        "Larger than memory: Dask"; `method` 'lstsq' then always takes the normal
        equations).
    size : int, sequence of int, or 'auto'
        Kernel shape along every spatial axis (odd, even, rectangular, N-D). 'auto' finds
        it: the statistics of a generous support (`max_size`) are gathered once, every
        smaller support that holds the anchor is fitted from their sub-blocks on the same
        samples, and the one with the lowest BIC is kept, unless what it adds beyond the
        significant coefficients is not significant (``fit.size_scores`` holds every
        score). The search covers only supports the data can judge (see `max_size`).
        'valid' and 'full' outputs imply the size: with 'auto', their output must differ
        from the input in shape (equal shapes are 'same' geometry).
    mode : {None, 'same', 'valid', 'full'}, optional
        Output geometry as in :func:`kernelfit.convolve`. None infers it from the shapes:
        equal means 'same', smaller by ``size - 1`` 'valid', larger by ``size - 1`` 'full'.
    boundary : {None, 'auto', 'fill', 'constant', 'edge', 'wrap', 'symmetric', 'symm', \
'reflect'}
        None uses only the output samples that do not depend on how the input was
        extended (the interior in 'same' mode), so an unknown edge rule cannot bias the
        kernel; a named rule uses every output sample under that rule; 'auto' fits the
        interior, then compares each rule's residual on the border samples with the
        interior's (``fit.boundary_scores``) and refits with the rule that reproduces the
        border. A border the filter left unchanged (Pillow's kernel filters do) is
        recognised and left out; when no rule fits, the interior fit is kept with a
        ModelWarning. 'full' mode extends the input with `fillvalue` (zero) unless a rule
        is named.
    fillvalue : number, optional
        The value beyond the edges for the 'fill' rule.
    convention : {'convolution', 'correlation'}, optional
        The orientation the kernel is returned in (the fit is the same either way).
    origin : int, sequence of int, or 'auto', optional
        Anchor shift in 'same' mode, as in :func:`kernelfit.convolve`, for filters that
        centre even kernels differently or are causal. 'auto' fits every placement of the
        given size that holds the anchor (a box of ``2 * size - 1`` taps, whatever
        `max_size`) and keeps the best by BIC. With ``size='auto'`` the placement is
        found too, so `origin` must be 0 or 'auto'.
    bias : bool, optional
        Also fit an additive constant, one per output channel (Pillow's EMBOSS adds 128).
    channel_axis : int or None, optional
        The channel axis of `input` (and of `output` if it has one; an output with one
        dimension fewer is a grey output from a colour input).
    channels : {'shared', 'separate', 'full'}, optional
        With a channel axis: 'shared' fits one spatial kernel applied to every channel;
        'separate' one kernel per channel, returned as ``(*size, C)``; 'full' a
        ``(*size, C_in, C_out)`` kernel that mixes channels like a convolution layer. A
        grey output always gives a ``(*size, C_in)`` kernel ('shared' or 'full'). The same
        words mean the same layouts in :func:`kernelfit.convolve`.
    mask : array_like of bool, or a sequence of them, optional
        True where an output sample may be used; shaped like the output (or its spatial
        axes, for every channel alike). Masked samples may hold NaN. A dask array stays
        lazy, with chunks of its own.
    weights : array_like of float, or a sequence of them, optional
        A weight >= 0 per output sample, shaped like the output (or its spatial axes, for
        every channel alike), e.g. inverse variances: the fit then minimises the weighted
        sum of squares. A weight of 0 leaves the sample out (as `mask` does). Weights are
        relative: scaling them all changes nothing, and the standard errors take the
        residual's own scale. Every path takes them; the normal equations then sum the
        weighted windows directly (a weighted Gram matrix has no FFT form), which costs
        more than an unweighted fit for large kernels. A dask array stays lazy.
    noise : {None, 'poisson', 'auto'}, optional
        A noise model whose variance follows the output level: 'poisson' (photon noise,
        with `gain`, plus `read_noise`), ``variance = read_noise**2 + mu / gain`` at the
        expected output mu. The fit is then weighted by the inverse variance at the
        kernel's own prediction, refitted until the kernel settles (iteratively reweighted
        least squares: two passes over the pixels a refit, at most 4 refits), and its
        standard errors are those of the known variance. ``fit.noise`` reports the refits
        and the chi-square per degree of freedom (about 1 when the model holds). 'auto'
        fits the line ``variance = a + b * level`` to the least-squares residual's variance
        by level (gathered in its residual pass) and, when it grows with the level (b over 5
        standard errors and 10% of the mean variance across the levels), refits with it;
        ``fit.noise`` holds the curve, the line and the gain and read noise it means.
    prior : dict, optional
        ``{'laplacian': w}``: a smoothness prior, the fit minimising
        ``|A k + b - y|^2 + w |L k|^2`` with L the kernel grid's discrete Laplacian (zero
        beyond the support: it also asks the kernel to fall to zero at its edges, as a
        PSF does); ``w='gcv'`` chooses the weight by generalised cross-validation. For
        noisy data and smooth kernels. ``fit.prior`` holds the weight used; the standard
        errors are the regularised estimator's (its bias is not in them). With `method`
        'lstsq' or 'lstsq-stats'; not with `constraints`.
    errors : {'model', 'sandwich'}, optional
        How the standard errors (and `covariance`) are computed: 'model' from the fitted
        model's noise (one variance for all, or the noise model's); 'sandwich' the
        heteroscedasticity-consistent ``G^-1 (A^T diag(r^2) A) G^-1`` (HC0), right
        whatever the noise's variance does (brighter samples noisier, an unmodelled
        noise), at the cost of one more pass that sums the windows weighted by the squared
        residuals (O(samples x unknowns^2)). Unweighted least squares only.
    loss : {'squared', 'huber', 'cauchy'}, optional
        'squared' is least squares. A robust loss bounds what a wrong sample (a cosmic ray,
        a logo burnt in, a stuck pixel) can do to the kernel: iteratively reweighted least
        squares with weights ``psi(u) / u`` at the residuals ``u = r / scale`` of the
        previous fit, the scale from the least-squares residuals' median magnitude (as the
        MAD estimates a normal sigma). At most 6 passes over the pixels. ``fit.robust``
        reports the scale and the outliers (residuals beyond 3 scales; see
        ``fit.outlier_mask``). Huber's loss is quadratic near 0 and linear beyond 1.345
        scales; Cauchy's redescends, for gross outliers. With `noise`, on the residuals
        standardised by its variance (photon noise and cosmic rays); not with `weights`.
    gain, read_noise : float, optional
        With ``noise='poisson'``: photons (or electrons) per output unit (> 0; 1 for photon
        counts), and the read noise's standard deviation in output units (default 0).
    saturated : 'auto', bool or (low, high), optional
        'auto' leaves out samples of an integer output at its dtype's limits (clipped,
        e.g. 0 and 255); False keeps every sample; True is 'auto' for any dtype, with the
        output's own minimum and maximum (the one option that reads the output before the
        fit does); a pair names the limits.
    method : {'lstsq', 'lstsq-dense', 'lstsq-stats', 'pinv', 'ridge', 'tf'}, optional
        'lstsq': exact least squares by the cheaper exact path, chosen by the size of the
        patch matrix: 'lstsq-dense' (its SVD, minimum-norm, up to 64 MB) or 'lstsq-stats'
        (the normal equations from statistics gathered by FFT, one Cholesky
        factorisation, and one pass for the exact residual, refined once when the
        normal equations' error could show). 'pinv': an explicit pseudoinverse. 'ridge':
        Tikhonov regularisation. 'tf': gradient descent in TensorFlow (the optional extra
        ``kernelfit[tf]``), on a GPU when TensorFlow sees one. ``fit.method`` says which
        path ran.
    options : dict, optional
        Options of the chosen method, checked against its table (an option of another
        method is an error):

        - 'pinv': ``rcond``, the relative cut-off (default ``max(n, m) * eps``).
        - 'ridge': ``reg`` (required), the Tikhonov parameter in
          ``|A k - b|^2 + reg |k|^2`` (the bias unpenalised), or 'gcv' to choose it by
          generalised cross-validation.
        - 'tf': ``optimizer`` ('cg', the default: conjugate gradients with an exact line
          search; or tf.keras' 'adam', 'sgd', 'momentum'), ``learning_rate``,
          ``max_steps`` (default 2000 for 'cg', 5000 otherwise), ``rtol`` and ``gtol``
          (stop when the loss changes by less than rtol relative to it, or the gradient
          norm falls below gtol times its first value), ``dtype`` ('float64' or
          'float32'), ``rng`` (seed or numpy Generator, for mini-batches and the power
          iteration), ``batch_size`` (pairs per step, stochastic optimizers),
          ``verbose`` (a progress bar; default on a terminal) and ``callback``
          (``callback(step, loss, kernel)`` after every step; returning True stops).
    max_size : int, optional
        The largest support ``size='auto'`` tries along each axis (odd). The data may allow
        less: the search stops where a support would leave fewer than 10 output samples per
        unknown (of every pair, before masks) or span over half the data along an axis, and
        ``fit.size_limit`` says where (a 20x20 image allows 5x5, a 200x200 one 47x47). A
        kernel found at that limit raises a ModelWarning: it may be larger.
    checks : bool, optional
        Check the model against the data, from numbers the fit computes anyway (no
        refits): a larger support or another placement of the given size that explains
        the output far better; a residual that curves with the output level (a tone
        curve); an offset the model lacks; kernels of the top and bottom halves that differ
        and explain much of the residual (not shift-invariant); a residual well above the
        data's precision that is not noise, following the local contrast or agreeing
        between neighbours (a non-linear filter such as a median or bilateral filter, or
        JPEG). Each raises a ModelWarning naming the cause it tested and what to pass.
    progress : bool or callable, optional
        Report the passes over the pixels, tile by tile: True draws a tqdm bar on stderr
        (tqdm is imported only then); a callable is called as ``progress(stage, done,
        total)`` with stage 'statistics' or 'residual' and counts of tiles (total None
        where not known in advance). For fits that take seconds: gigapixel images, many
        pairs, large kernels. On Dask, True shows Dask's own bar
        (``dask.diagnostics.ProgressBar`` on stderr, or ``distributed.progress`` with a
        Client, whose dashboard shows the tasks too); a callable hears of the tiles as
        their tasks finish (with a Client, when each pass ends).
    constraints : dict, optional
        Fit a constrained kernel (each is optional; they combine, except 'rank' with
        'symmetry'): ``'nonneg': True``, every coefficient >= 0; ``'sum': s``, the
        coefficients that make one output sample add up to s (1 for a blur that keeps the
        mean; per channel for 'separate', over the input channels too for 'full');
        ``'symmetry'``: 'point' (``k[i] = k[-i]``), 'mirror' (unchanged by reversing any
        axis) or 'radial' (one value per distance from the centre), fewer unknowns;
        ``'rank': r``, a 2-D kernel that is a sum of r separable terms (1: separable), or
        'auto' for the rank with the lowest BIC (``fit.rank_scores``). They are imposed on
        the normal equations of the fitted support (`method` 'lstsq' or 'lstsq-stats'; the
        searches of 'auto' options choose on the free fit), and are met exactly: the sum
        and symmetry to rounding, bounds with coefficients that are exactly 0 (standard
        error 0: held at the bound). Standard errors are those of the constrained fit.
        ``fit.constraints`` says what was imposed.

    Returns
    -------
    fit : KernelFit
        The kernel, its standard errors and the diagnostics; ``fit.predict(input)``
        re-applies it. With 'auto' options, the evidence: ``fit.size_scores`` (BIC per
        candidate support, keyed by ``(size, origin)``) and ``fit.boundary_scores`` (border
        residual RMS per edge rule).

    Raises
    ------
    ValueError
        For shapes that fit no mode (or ``size='auto'`` with 'valid' or 'full' and equal
        shapes), a size larger than the data, NaN or infinite values
        in the samples the fit reads (in a dask array: naming the first one's index and
        chunk), mismatched pairs or masks, unknown options, or no usable samples.
    TypeError
        For arguments of the wrong type.
    MemoryError
        Before anything is allocated, when the normal equations of the support the fit
        needs (`size`; `max_size` with ``size='auto'``; ``2 * size - 1`` taps per axis with
        ``origin='auto'``) would not fit in the memory available; it says how much they
        need and which size would fit.

    Warns
    -----
    IdentifiabilityWarning
        When the data do not determine the kernel: the minimum-norm kernel is returned. Also
        when the kernel is identifiable but so ill-conditioned that no coefficient differs
        from zero by three standard errors.
    ModelWarning
        When the data contradict the model (see `checks`), no edge rule reproduces the
        border with ``boundary='auto'``, or ``size='auto'`` finds a kernel at the limit of
        what the data allow it to search (see `max_size`).

    See Also
    --------
    kernelfit.convolve : The forward model the kernel is fitted for.
    kernelfit.identify : Name a fitted kernel.

    Notes
    -----
    With windows :math:`w_n` of the (extended) input, the fit solves

    .. math:: \min_{k, c} \sum_{n \in \text{usable}} v_n |y_n - w_n \cdot k - c|^2 ,

    with the `weights` :math:`v_n` (1 without them).

    Everything it needs is the Gram matrix of the windows, their correlation with the
    outputs and the outputs' energy: sums over samples, gathered in one pass over the
    pixels, tile by tile, for the largest support any question asks about. Smaller
    supports, other placements, bands of rows and edge rules are sub-blocks or thin
    additions of the same sums. Small problems are then solved from the patch matrix by
    SVD (:math:`k = V f(S) U^H y`, with :math:`f = 1/s` above the rank tolerance), large
    ones from the normal equations; the standard errors are the square roots of the
    diagonal of :math:`\hat\sigma^2 (W^H W)^{-1}`, with :math:`\hat\sigma^2` the residual
    variance from one more pass.

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
    >>> fit.identifiable, fit.n_equations, fit.method
    (True, 144, 'lstsq-dense')

    A causal filter (its output at n depends on n and earlier samples) is found with
    ``origin='auto'``:

    >>> signal = rng.standard_normal(200)
    >>> causal = np.convolve(signal, [0.5, 0.3, 0.2])[:200]
    >>> fit = kernelfit.fit_kernel(signal, causal, 3, origin="auto")
    >>> fit.origin, fit.kernel.round(10) + 0.0
    ((-1,), array([0.5, 0.3, 0.2]))
    """
    problem = prepare(input, output, size, mode=mode, boundary=boundary, fillvalue=fillvalue,
                      convention=convention, origin=origin, bias=bias,
                      channel_axis=channel_axis, channels=channels, mask=mask,
                      saturated=saturated, method=method, options=options,
                      max_size=max_size, checks=checks, progress=progress,
                      constraints=constraints, weights=weights, noise=noise, gain=gain,
                      read_noise=read_noise, loss=loss, prior=prior, errors=errors)
    planned = plan(problem)
    _check_memory(problem, planned[0], planned[3])
    first = first_pass(problem, *planned)  # the one pass over the pixels
    choice = choose(problem, first)
    design = choice.design
    total = sum(box.size for box in design.boxes) * problem.n_out
    rows = first.total.n_rows
    if int(rows.sum()) == 0 or (rows == 0).any():
        rows = statistics_for(problem, first, design).n_rows
    if int(rows.sum()) == 0:
        raise ValueError(f"no output samples left to fit: all {total} usable samples are "
                         + ("masked out, saturated or of weight 0 (see mask=, saturated= and "
                            "weights=)" if problem.weighted else
                            "masked out or saturated (see mask= and saturated=)"))
    if rows.size > 1 and (rows == 0).any():  # a system of its own per output channel
        empty = [int(c) for c in np.flatnonzero(rows == 0)]
        raise ValueError(f"output channel{'s' if len(empty) > 1 else ''} "
                         f"{', '.join(map(str, empty))} ha{'ve' if len(empty) > 1 else 's'} "
                         f"no usable samples (all masked out or saturated): nothing determines "
                         f"{'their kernels' if len(empty) > 1 else 'its kernel'}; mask fewer "
                         f"samples, or fit the other channels alone")
    estimate = _estimate(problem, design, first)
    compression = jpeg_grid(problem, estimate) if problem.checks else None
    if compression is not None:
        # a JPEG output: with size='auto', the smallest support that fits within the
        # compression error
        simpler = (simplest_design(problem, first, choice) if problem.size == "auto"
                   and choice.frame is None else None)
        if simpler is not None:
            compression["searched"] = design.support.shape
            choice = dataclasses.replace(choice, design=simpler)
            design = simpler
            total = sum(box.size for box in design.boxes) * problem.n_out
            estimate = _estimate(problem, design, first)
        clustered = clustered_errors(problem, design, first, estimate, compression)
        if clustered is not None:  # errors that let the compression error correlate
            estimate = clustered
            compression["standard_errors"] = "clustered by block"
    if problem.errors == "sandwich":
        estimate = sandwich_errors(problem, design, estimate)
    fit = _result(problem, choice, estimate, total, compression)
    diagnose(problem, first, choice, estimate, fit)
    return fit


def _estimate(problem, design, first):
    """The estimate of `design` under the problem's noise model or loss."""
    if problem.robust:  # (with a noise model, on its standardised residuals)
        return solve_robust(problem, design, first, _solve)
    if problem.noise is not None:
        return solve_with_noise(problem, design, first, _solve)
    return _solve(problem, design, first)


def _solve(problem, design, first, final=True):
    """The estimate of `design`: constrained, or by the method asked for. Not `final`: an
    intermediate fit of a reweighting, which the normal equations make without a residual
    pass."""
    if problem.constraints is not None:
        return solve_constrained(problem, design, first, final)
    if problem.prior is not None:
        return solve_prior(problem, design, first, final)
    if problem.method in ("lstsq", "lstsq-stats"):
        return get_solver(problem.method)(problem, design, first, final=final)
    return get_solver(problem.method)(problem, design, first, **problem.options)


def _check_memory(problem, support, evidence):
    """Refuse, before anything is allocated, a fit whose normal equations would not fit in
    the memory available, saying how much they need and which kernel would fit."""
    needed = gram_bytes(problem, support, evidence)
    available = available_memory()
    if available is None or needed <= 0.8 * available:
        return
    # the largest square (cubic, ...) support of the same dimension that would fit
    ndim = support.ndim
    side = max(1, int((needed and (0.8 * available / needed)) ** (1 / (2 * ndim))
                      * support.size ** (1 / ndim)))
    what = (f"size='auto' searches up to {_shape_text(support.shape)}"
            if problem.size == "auto" else
            "origin='auto' fits every placement (2 * size - 1 taps per axis)"
            if problem.origin == "auto" else f"a {_shape_text(support.shape)} kernel")
    raise MemoryError(
        f"the normal equations need about {needed / 2**30:.1f} GiB ({support.size} taps: "
        f"{what}) and {available / 2**30:.1f} GiB of memory is available; about "
        f"{_shape_text((side,) * ndim)} would fit: pass a smaller size"
        + (" or max_size" if problem.size == "auto" else ""))


def _covariance(problem, estimate, spatial):
    """The estimate's covariance in the result's order: the kernel's coefficients as the
    result holds them (flipped for 'convolution', a grey output's channel axis dropped),
    then the bias; None where it was not kept, or some system did not give one."""
    covariance = estimate.covariance
    if covariance is None or not np.any(covariance):
        return None
    kernel = np.asarray(estimate.kernel)
    order = np.arange(kernel.size).reshape(kernel.shape)
    if problem.convention == "convolution":
        order = np.flip(order, axis=spatial)
    if problem.grey_output:
        order = order[..., 0]
    order = np.concatenate([order.ravel(), np.arange(kernel.size, covariance.shape[0])])
    out = np.ascontiguousarray(covariance[np.ix_(order, order)])
    return out if np.iscomplexobj(kernel) else out.real


def _shape_text(shape):
    return f"{shape[0]}-tap" if len(shape) == 1 else "x".join(map(str, shape))


def _result(problem, choice, estimate, total, compression=None):
    """The estimate in the user's terms: orientation, channel layout, scalar bias."""
    design = choice.design
    support = design.support
    spatial = tuple(range(support.ndim))
    kernel, stderr = estimate.kernel, estimate.stderr
    if problem.convention == "convolution":
        kernel, stderr = np.flip(kernel, axis=spatial), np.flip(stderr, axis=spatial)
    if problem.grey_output:
        kernel, stderr = kernel[..., 0], stderr[..., 0]
    bias, bias_stderr = estimate.bias, estimate.bias_stderr
    if bias is not None and (problem.channel_axis is None or problem.grey_output):
        bias, bias_stderr = bias.reshape(-1)[0].item(), float(bias_stderr.reshape(-1)[0])
    covariance = _covariance(problem, estimate, spatial)
    r2 = 1.0 - estimate.ss_res / estimate.ss_tot if estimate.ss_tot > 0 else (
        1.0 if estimate.ss_res == 0 else 0.0)
    origin = (support.origin(problem.convention) if problem.mode == "same"
              else (0,) * support.ndim)
    return KernelFit(
        kernel=np.ascontiguousarray(kernel), size=support.shape, bias=bias,
        stderr=np.ascontiguousarray(stderr), bias_stderr=bias_stderr, method=estimate.method,
        mode=problem.mode, boundary=design.boundary, convention=problem.convention,
        fillvalue=problem.fillvalue, origin=origin, channel_axis=problem.channel_axis,
        channels=problem.channels,
        residual_rms=float(np.sqrt(estimate.ss_res / max(estimate.n_equations, 1))),
        r2=float(r2), n_equations=estimate.n_equations, n_unknowns=estimate.n_unknowns,
        rank=estimate.rank, condition_number=float(estimate.condition_number),
        n_masked=total - estimate.n_equations, reg=estimate.reg,
        loss_history=estimate.loss_history, n_steps=estimate.n_steps,
        stop_reason=estimate.stop_reason, device=estimate.device,
        size_scores=choice.size_scores, boundary_scores=choice.boundary_scores,
        frame=choice.frame, size_limit=choice.size_limit, constraints=estimate.constraints,
        rank_scores=estimate.rank_scores, weighted=problem.weighted or estimate.noise is not None,
        noise=estimate.noise, robust=estimate.robust, compression=compression,
        prior=estimate.prior, covariance=covariance, errors=problem.errors)
