"""The result: the one type every fitting path returns.

A KernelFit holds the kernel, its diagnostics and the geometry it was fitted in, so that it can
re-apply itself (`predict`) and print a readable summary.
"""

import dataclasses

import numpy as np

from ._convolve import convolve
from ._geometry import anchor, interior

__all__ = ["KernelFit"]


def centre_on_anchor(kernel, stderr, size, origin, convention):
    """A kernel (and its stderr) on an odd grid with its anchor in the middle, origin 0.

    The first ``len(size)`` axes are spatial; the rest (channels) are kept. The added
    coefficients are exact zeros, with standard error 0.
    """
    kernel, stderr = np.asarray(kernel), np.asarray(stderr)
    if not any(origin) and all(k % 2 for k in size):
        return kernel.copy(), stderr.copy()
    anchors = anchor(size, convention, origin)
    halves = [max(a, k - 1 - a) for a, k in zip(anchors, size)]
    shape = tuple(2 * h + 1 for h in halves) + kernel.shape[len(size):]
    index = tuple(slice(h - a, h - a + k) for h, a, k in zip(halves, anchors, size))
    centred = np.zeros(shape, dtype=kernel.dtype)
    centred_stderr = np.zeros(shape)
    centred[index], centred_stderr[index] = kernel, stderr
    return centred, centred_stderr


def noise_text(noise):
    """A fit's noise model in words."""
    if noise["model"] == "auto" and not noise.get("level_dependent"):
        return ("auto: the residual's variance does not grow with the level (one variance "
                "for all: least squares as it is)")
    found = "auto: photon-like, " if noise["model"] == "auto" else "poisson, "
    return (f"{found}gain {noise['gain']:.4g}, read noise {noise['read_noise']:.4g} "
            f"({noise['refits']} refits; chi^2/dof {noise['chi2_dof']:.3g})")


@dataclasses.dataclass(frozen=True, repr=False)
class KernelFit:
    """A fitted kernel, its diagnostics, and the geometry it was fitted in.

    Every method of :func:`kernelfit.fit_kernel` returns this type with the same fields.

    Attributes
    ----------
    kernel : ndarray
        The kernel in `convention`: shape ``size`` (one kernel for every channel),
        ``(*size, C)`` with ``channels='separate'`` (``kernel[..., c]`` filters channel
        ``c``), ``(*size, C_in)`` for a grey output from a colour input, or
        ``(*size, C_in, C_out)`` with ``channels='full'``.
    size : tuple of int
        The spatial shape of the kernel.
    bias : float, complex, ndarray or None
        The fitted additive constant (one per output channel), or None without ``bias=True``.
    stderr : ndarray
        Standard error of each kernel coefficient (same shape as `kernel`), from the
        residual variance; NaN where the data do not determine the coefficient or leave no
        degrees of freedom.
    bias_stderr : float, ndarray or None
        Standard error of `bias`.
    method : str
        The path that solved it: 'lstsq-dense' (SVD of the patch matrix), 'lstsq-stats'
        (normal equations from the statistics), 'pinv', 'ridge' or 'tf'.
    mode, boundary, convention : str (boundary may be None)
        How the kernel was fitted: `boundary` None means only output samples that do not
        depend on the edge rule were used.
    fillvalue : number
        The value beyond the edges for the 'fill' rule.
    origin : tuple of int
        Anchor shift in 'same' mode, as in :func:`kernelfit.convolve`.
    channel_axis : int or None
        The channel axis of the input (and output, when it has one).
    channels : str or None
        'shared', 'separate' or 'full' (None without channels).
    residual_rms : float
        Root mean square of the residuals over the fitted samples (with `weighted`, of the
        residuals times the square roots of their weights).
    r2 : float
        Coefficient of determination of the fitted samples.
    n_equations, n_unknowns, rank : int
        Fitted samples (equations), coefficients (kernel plus bias), and the numerical rank
        of the design.
    condition_number : float
        Ratio of the largest to the smallest singular value of the design (after the
        bias is projected out); infinite when it is rank-deficient.
    identifiable : bool
        ``rank == n_unknowns``: the data determine the kernel uniquely.
    n_masked : int
        Output samples left out by `mask` or as saturated.
    reg : float, ndarray or None
        The Tikhonov parameter used by ``method='ridge'``, or the weight of a Laplacian
        `prior` (one per channel when GCV chose them separately).
    loss_history : ndarray or None
        ``method='tf'``: the loss (mean squared error) before the first step and after each.
    n_steps : int or None
        ``method='tf'``: optimisation steps taken.
    stop_reason : {'converged', 'max_steps', 'callback', 'diverged'} or None
        ``method='tf'``: why the optimisation stopped.
    device : str or None
        ``method='tf'``: the TensorFlow device that ran it, e.g. '/device:GPU:0'.
    size_scores : dict or None
        ``size='auto'`` or ``origin='auto'``: the BIC of each candidate support, keyed by
        ``(size, origin)`` (lower is better; all scored on the same samples).
    boundary_scores : dict or None
        ``boundary='auto'``: the RMS residual of the border samples under each edge rule
        ('unchanged': the output's border equals the input's).
    frame : tuple or None
        When ``boundary='auto'`` found that the filter left the output's border as it was
        in the input (Pillow's Kernel filters do): per spatial axis, the widths
        ``(before, after)`` of that frame, which `predict` copies from its input.
        `boundary` is then None. None otherwise.
    size_limit : tuple of int or None
        ``size='auto'``: the largest size searched, when the data allowed less than
        `max_size` (a support must leave at least 10 output samples per unknown, and span at
        most about half the data along each axis); None when the search reached `max_size`.
    constraints : dict or None
        The constraints the kernel was fitted under (``fit_kernel(constraints=...)``, with
        the rank found for ``'rank': 'auto'``); None for a free fit.
    rank_scores : dict or None
        ``constraints={'rank': 'auto'}``: the BIC of each rank tried (lower is better).
    weighted : bool
        Whether the samples carried weights (``fit_kernel(weights=...)``, or a noise
        model's): the fit, `r2` and `residual_rms` are then weighted.
    noise : dict or None
        With a noise model (``fit_kernel(noise='poisson', ...)``): 'model', 'gain',
        'read_noise', 'refits' (weighted fits after the unweighted start) and 'chi2_dof'
        (the weighted residual per degree of freedom: about 1 when the model holds;
        the standard errors assume it does). With ``noise='auto'``: 'level_dependent'
        (whether the residual's variance grows with the level), 'curve' (per level bin:
        level, variance, samples) and, when it grows, the line found ('intercept',
        'slope'), the 'gain' and 'read_noise' it means, 'refits' and 'chi2_dof'.
    robust : dict or None
        With a robust loss (``fit_kernel(loss='huber')``): 'loss', 'scale' (the residual
        scale the weights used: the least-squares residuals' median magnitude / 0.6745),
        'refits' and 'outliers' (samples whose residual exceeds 3 scales).
    prior : dict or None
        With ``fit_kernel(prior={'laplacian': ...})``: 'laplacian' (the weight used) and
        'chosen_by' ('gcv' or 'given').
    covariance : ndarray or None
        The covariance of the kernel's coefficients (flattened as `kernel` is, in its
        convention) and then the bias (flattened), ``(K + B, K + B)``: the
        residual-variance-scaled inverse of the normal equations (or the constrained or
        regularised estimator's); systems fitted apart (one per channel) are independent.
        Its diagonal is `stderr` squared (and `bias_stderr` squared). Kept for up to 2048
        unknowns in all (None above); ``predict(input, return_std=True)`` turns it into
        the re-synthesised output's uncertainty.
    errors : str
        How `stderr` and `covariance` were computed: 'model' or 'sandwich'
        (``fit_kernel(errors=...)``).
    compression : dict or None
        When the residual shows JPEG's 8x8 block grid (2-D images, with `checks`):
        'format' ('JPEG'), 'block' (8), 'rows' and 'columns' (where the blocks start,
        modulo 8), 'jumps' (the mean square residual jump across block edges over the
        median one, per axis; about 1 without compression), and with ``size='auto'``,
        'searched' (the support the search found before: the one kept is the smallest that
        fits within the compression error of the best).
    """

    kernel: np.ndarray
    size: tuple
    bias: object
    stderr: np.ndarray
    bias_stderr: object
    method: str
    mode: str
    boundary: object
    convention: str
    fillvalue: object
    origin: tuple
    channel_axis: object
    channels: object
    residual_rms: float
    r2: float
    n_equations: int
    n_unknowns: int
    rank: int
    condition_number: float
    n_masked: int
    reg: object = None
    loss_history: object = None
    n_steps: object = None
    stop_reason: object = None
    device: object = None
    size_scores: object = None
    boundary_scores: object = None
    frame: object = None
    size_limit: object = None
    constraints: object = None
    rank_scores: object = None
    weighted: bool = False
    noise: object = None
    robust: object = None
    compression: object = None
    prior: object = None
    covariance: object = None
    errors: str = "model"

    def __post_init__(self):
        for name in ("kernel", "stderr", "bias", "bias_stderr", "reg", "loss_history",
                     "covariance"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    def centred(self):
        """The kernel (and stderr) on an odd grid with the anchor in the middle, origin 0.

        A fit may describe a filter by a small kernel placed off-centre with `origin`
        (Pillow's EMBOSS is found as 2x2 at origin (1, 0)); this is the same filter as the
        library would write it: an odd kernel about its centre, padded with exact zeros
        (standard error 0). Spatial axes only; channel axes are kept.

        Returns
        -------
        kernel, stderr : ndarray

        Examples
        --------
        >>> import numpy as np
        >>> import kernelfit
        >>> x = np.random.default_rng(0).standard_normal((30, 30))
        >>> y = kernelfit.convolve(x, [[1.0, 0.0], [0.0, -1.0]], origin=(1, 1))
        >>> fit = kernelfit.fit_kernel(x, y, 2, origin=(1, 1), checks=False)
        >>> centred = fit.centred()[0]
        >>> centred.round(12) + 0.0
        array([[ 1.,  0.,  0.],
               [ 0., -1.,  0.],
               [ 0.,  0.,  0.]])
        >>> np.allclose(kernelfit.convolve(x, centred), y)  # the same filter
        True
        """
        return centre_on_anchor(self.kernel, self.stderr, self.size, self.origin,
                                self.convention)

    @property
    def negligible(self):
        """Coefficients indistinguishable from zero: within 3 standard errors of it."""
        return np.abs(self.kernel) <= 3 * np.where(np.isfinite(self.stderr), self.stderr, 0)

    @property
    def identifiable(self):
        """True when the data determine every coefficient (rank equals the unknowns)."""
        return self.rank == self.n_unknowns

    def predict(self, input, *, boundary=None, return_std=False):
        """Apply the fitted kernel (and bias) to `input` with the fitted geometry.

        Parameters
        ----------
        input : array_like
            Data shaped like the fitted input (with its channel axis, if any).
        boundary : str, optional
            Edge rule for samples that depend on it. Defaults to the fitted rule; a fit
            with ``boundary=None`` in 'same' mode did not determine one, and those border
            samples are NaN unless a rule is given here (or copied from `input` in the
            `frame` that the filter was found to leave unchanged).
        return_std : bool, optional
            Also return each output sample's standard error from the kernel's and bias's
            `covariance` (the uncertainty of the re-synthesised output, not the noise of
            a new one): ``sqrt(sum_k lambda_k (filter of input by eigenvector k)^2)`` over
            the covariance's eigenvectors, one filtering each.

        Returns
        -------
        output : ndarray
            Shaped like the fitted output.
        std : ndarray
            With `return_std`: shaped like `output`.
        """
        output = self._apply(input, self.kernel, self.bias, boundary)
        if not return_std:
            return output
        if self.covariance is None:
            raise ValueError("return_std needs the fit's covariance, which a fit of over 2048 "
                             "unknowns does not hold")
        values, vectors = np.linalg.eigh(np.nan_to_num(self.covariance))
        size = np.size(self.kernel)
        variance = np.zeros(output.shape)
        for value, vector in zip(values, vectors.T):
            if value <= 1e-14 * max(values.max(), 0):
                continue
            kernel = vector[:size].reshape(np.shape(self.kernel))
            bias = (None if self.bias is None else
                    vector[size:].reshape(np.shape(self.bias)) if np.ndim(self.bias) else
                    vector[size])
            variance += value * np.abs(self._apply(input, kernel, bias, boundary,
                                                   frame=False)) ** 2
        return output, np.sqrt(variance)

    def _apply(self, input, kernel, bias, boundary, frame=True):
        """`kernel` and `bias` (shaped like the fit's) applied with the fit's geometry; the
        `frame` the filter left unchanged copied from `input` (else 0: exact)."""
        rule = self.boundary if boundary is None else boundary
        output = convolve(input, kernel, mode=self.mode, boundary=rule or "fill",
                          fillvalue=self.fillvalue, convention=self.convention,
                          origin=self.origin, channel_axis=self.channel_axis,
                          channels=self.channels)
        channel_axis = (None if output.ndim == len(self.size)
                        else self.channel_axis % output.ndim)
        if bias is not None:
            bias = np.asarray(bias)
            if channel_axis is not None:
                bias = np.expand_dims(bias, tuple(range(1, output.ndim - channel_axis)))
            output = output + bias
        if rule is None and self.mode == "same":
            spatial = [n for axis, n in enumerate(output.shape) if axis != channel_axis]

            def outside(box):
                where = np.ones(spatial, dtype=bool)
                where[tuple(box)] = False
                return (where if channel_axis is None else
                        np.broadcast_to(np.expand_dims(where, channel_axis), output.shape))

            output[outside(interior(spatial, self.size, self.convention, self.origin))] = \
                np.nan
            if self.frame is not None:  # the filter left these samples as they were
                kept = outside(slice(before, n - after)
                               for (before, after), n in zip(self.frame, spatial))
                output[kept] = np.asarray(input)[kept] if frame else 0
        return output

    def outlier_mask(self, input, output):
        """Where the output is an outlier of a robust fit: True where its residual exceeds
        3 times ``robust['scale']`` (the samples ``robust['outliers']`` counts); with a
        noise model, its residual over the model's standard deviation at the prediction.

        Parameters
        ----------
        input, output : array_like
            One fitted pair.

        Returns
        -------
        mask : ndarray of bool
            Shaped like `output`; False where the fit predicts nothing (a border it did not
            fit).
        """
        if not self.robust:
            raise ValueError("outlier_mask needs a robust fit (fit_kernel(loss='huber' or "
                             "'cauchy'))")
        from ._reweight import noise_of

        predicted = self.predict(input)
        residual = np.abs(np.asarray(output, dtype=float) - predicted)
        noise = noise_of(self.noise)
        if noise is not None:  # standardised, as the fit judged them
            residual = residual / np.sqrt(noise.variance(np.nan_to_num(predicted)))
        scale = self.robust["scale"]
        if not scale > 0:  # an exact fit: no outliers
            return np.zeros(residual.shape, dtype=bool)
        return np.nan_to_num(residual, nan=0.0) > 3.0 * scale

    def __repr__(self):
        return (f"KernelFit(kernel shape={self.kernel.shape}, method={self.method!r}, "
                f"mode={self.mode!r}, boundary={self.boundary!r}, "
                f"convention={self.convention!r}, residual_rms={self.residual_rms:.3g}, "
                f"rank={self.rank}/{self.n_unknowns})")

    def __str__(self):
        shown = np.asarray(self.kernel)
        # Rounding noise would print as -0.; the summary shows it as 0.
        shown = np.where(np.abs(shown) > 1e-12 * np.abs(shown).max(), shown, 0)
        with np.printoptions(precision=4, suppress=True, linewidth=88, threshold=400,
                             edgeitems=4):
            kernel_text = np.array2string(shown, prefix="  ")
        lines = [
            f"KernelFit: {'x'.join(map(str, self.kernel.shape))} kernel by {self.method!r} "
            f"in {self.convention} orientation",
            f"  geometry: mode={self.mode!r}, boundary={self.boundary!r}"
            + (f", origin={self.origin}" if any(self.origin) else "")
            + (f", channels={self.channels!r} (channel_axis={self.channel_axis})"
               if self.channels else ""),
            "  kernel:",
            "  " + kernel_text,
        ]
        finite = self.stderr[np.isfinite(self.stderr)]
        if finite.size:
            lines.append(f"  stderr{' (sandwich)' if self.errors == 'sandwich' else ''}: "
                         f"largest {finite.max():.3g}"
                         + (f" ({self.stderr.size - finite.size} not determined)"
                            if finite.size < self.stderr.size else ""))
        if self.bias is not None:
            def general(value):
                return np.array2string(np.asarray(value), formatter={
                    "float_kind": "{:.4g}".format, "complex_kind": "{:.4g}".format})
            lines.append(f"  bias: {general(self.bias)} (stderr {general(self.bias_stderr)})")
        lines.append(f"  fit: {'weighted ' if self.weighted else ''}residual RMS "
                     f"{self.residual_rms:.4g}, R^2 {self.r2:.6f}, "
                     f"{self.n_equations} equations"
                     + (f", {self.n_masked} samples masked" if self.n_masked else ""))
        status = "identifiable" if self.identifiable else "NOT identifiable"
        lines.append(f"  {status}: rank {self.rank} of {self.n_unknowns} unknowns, "
                     f"condition number {self.condition_number:.3g}"
                     + (f", ridge reg {np.array2string(np.asarray(self.reg), precision=3)}"
                        if self.reg is not None and not self.prior else ""))
        if self.size_scores:
            best = min(self.size_scores, key=self.size_scores.get)
            lines.append(f"  size found: {'x'.join(map(str, best[0]))} at origin {best[1]} "
                         f"(BIC, {len(self.size_scores)} candidates"
                         + (f"; the data allow a search up to "
                            f"{'x'.join(map(str, self.size_limit))} only"
                            if self.size_limit else "") + ")")
        if self.prior:
            lines.append(f"  prior: Laplacian, weight "
                         f"{np.array2string(np.asarray(self.prior['laplacian']), precision=3)}"
                         f" ({self.prior['chosen_by']})")
        if self.compression:
            lines.append(f"  compression: {self.compression['format']} "
                         f"({self.compression['block']}x{self.compression['block']} blocks "
                         f"in the residual, edge jumps {self.compression['jumps'][0]:.2f}x and "
                         f"{self.compression['jumps'][1]:.2f}x the median)")
        if self.robust:
            lines.append(f"  robust: {self.robust['loss']} loss, scale "
                         f"{self.robust['scale']:.3g}, {self.robust['outliers']} outliers "
                         f"(beyond 3 scales), {self.robust['refits']} refits")
        if self.noise:
            lines.append("  noise: " + noise_text(self.noise))
        if self.constraints:
            lines.append("  constraints: " + ", ".join(
                f"{name} {value!r}" if not isinstance(value, bool) else name
                for name, value in self.constraints.items())
                + (f" (BIC over ranks {', '.join(map(str, self.rank_scores))})"
                   if self.rank_scores else ""))
        if self.boundary_scores:
            ranked = sorted(self.boundary_scores.items(), key=lambda item: item[1])
            lines.append("  border residual by edge rule: " + ", ".join(
                f"{rule} {value:.3g}" for rule, value in ranked))
        if self.n_steps is not None:
            lines.append(f"  optimisation: {self.n_steps} steps, {self.stop_reason}, final loss "
                         f"{self.loss_history[-1]:.4g}, on {self.device}")
        return "\n".join(lines)
