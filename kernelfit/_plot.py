"""Figures: a fit at a glance, and the sliding-window animation that explains convolution.

matplotlib is imported inside these functions only, with its object-oriented API (no pyplot
state), so that importing kernelfit stays light and nothing depends on a display.
"""

import numpy as np

from ._io import atomic_path


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _image_panel(ax, image, title, *, cmap="gray", vmin=None, vmax=None, colorbar=False):
    image = np.asarray(image)
    if image.ndim == 3:  # colour, channels last; floats are shown clipped to their range
        shown = image if image.dtype == np.uint8 else np.clip(
            (image - np.nanmin(image)) / max(np.nanmax(image) - np.nanmin(image), 1e-12), 0, 1)
        handle = ax.imshow(shown, interpolation="nearest")
    else:
        handle = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        ax.figure.colorbar(handle, ax=ax, shrink=0.8)
    return handle


def kernel_panel(ax, kernel, title, *, annotate=None):
    """A kernel as a heat map centred on zero, each coefficient written on it when small."""
    kernel = np.real(np.asarray(kernel))
    if kernel.ndim == 1:
        kernel = kernel[np.newaxis]
    limit = np.abs(kernel).max() or 1.0
    handle = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(kernel.shape[1]))
    ax.set_yticks(range(kernel.shape[0]))
    ax.tick_params(labelsize=7)
    if annotate is None:
        annotate = max(kernel.shape) <= 9
    if annotate:
        fontsize = {3: 10, 4: 9, 5: 8, 6: 7, 7: 6}.get(max(kernel.shape), 5)
        # Fixed point, to three significant digits of the largest coefficient in a 3x3
        # panel and two in larger ones (0.0625 and -0.0001 rather than 6.25e-02 and
        # -9.99e-05, which overlap); below 5e-4 of it, "0".
        digits = 3 if max(kernel.shape) <= 3 else 2
        decimals = max(0, digits - int(np.floor(np.log10(limit))))
        for (i, j), value in np.ndenumerate(kernel):
            text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
            if abs(value) < 5e-4 * limit or text in ("-0", ""):
                text = "0"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if abs(value) > 0.6 * limit else "black")
    ax.figure.colorbar(handle, ax=ax, shrink=0.8)
    return handle


def fit_figure(path, input, output, predicted, fit, *, used=None, titles=("input", "output")):
    """Write a PNG: input, output, re-synthesised output, residual map, and the kernel.

    The residual map greys out samples the fit did not use: `used` if given, else the
    border a fit without an edge rule leaves undetermined and, for integer outputs, the
    samples clipped at the dtype's limits. Its colour scale is the 99th percentile of the
    rest, so that a few large residuals do not hide the others.
    """
    input, output, predicted = (np.asarray(a) for a in (input, output, predicted))
    residual = output.astype(float) - predicted
    if used is None:
        used = np.isfinite(residual)
        if np.issubdtype(output.dtype, np.integer):
            info = np.iinfo(output.dtype)
            used &= (output > info.min) & (output < info.max)
    residual = np.where(used, residual, np.nan)
    if residual.ndim == 3:
        residual = residual.mean(axis=-1)
    spatial_kernel = np.asarray(fit.kernel)
    while spatial_kernel.ndim > len(fit.size):  # one slice of a channel-mixing kernel
        spatial_kernel = spatial_kernel[..., 0]
    figure = _figure(17, 4.3)
    axes = figure.subplots(1, 5)
    if input.ndim == 1:
        for ax, (values, title) in zip(axes[:3], ((input, titles[0]), (output, titles[1]),
                                                 (predicted, "re-synthesised"))):
            ax.plot(values, lw=1)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("sample")
        axes[3].plot(residual, lw=1, color="C3")
        outliers = _outliers(fit, input, output)
        if outliers is not None and outliers.any():
            where = np.flatnonzero(outliers)
            axes[3].plot(where, residual[where], "kx", markersize=4,
                         label=f"{where.size} outliers")
            axes[3].legend(fontsize=8)
        axes[3].set_title("residual (output - re-synthesised)", fontsize=10)
        axes[3].set_xlabel("sample")
    else:
        low = np.nanmin(output) if output.dtype != np.uint8 else 0
        high = np.nanmax(output) if output.dtype != np.uint8 else 255
        _image_panel(axes[0], input, titles[0])
        _image_panel(axes[1], output, titles[1], vmin=low, vmax=high)
        shown = np.clip(np.round(predicted), 0, 255).astype(np.uint8) if (
            output.dtype == np.uint8 and predicted.ndim == 3) else predicted
        _image_panel(axes[2], shown, "re-synthesised (kernel applied to input)", vmin=low,
                     vmax=high)
        finite = np.abs(residual[np.isfinite(residual)])
        limit = np.percentile(finite, 99) if finite.size and finite.max() > 0 else 1.0
        import matplotlib

        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.8")
        outliers = _outliers(fit, input, output)
        _image_panel(axes[3], residual, f"residual (output - re-synthesised), RMS "
                     f"{fit.residual_rms:.3g}\ngrey: not fitted (border, clipped, masked)"
                     + ("" if outliers is None else
                        f"\nblack x: {int(outliers.sum())} outliers of the {fit.robust['loss']}"
                        f" fit"), cmap=cmap, vmin=-limit, vmax=limit, colorbar=True)
        if outliers is not None and outliers.any():
            rows, columns = np.nonzero(outliers)
            axes[3].scatter(columns, rows, s=6, marker="x", c="k", linewidths=0.6)
    finite_stderr = np.asarray(fit.stderr)[np.isfinite(fit.stderr)]
    kernel_panel(axes[4], spatial_kernel, f"kernel, {fit.convention} orientation"
                 + (f"\nlargest stderr {finite_stderr.max():.2g}" if finite_stderr.size
                    else ""))
    figure.suptitle(f"{'x'.join(map(str, fit.size))} kernel by {fit.method}: R² {fit.r2:.6f}, "
                    f"rank {fit.rank} of {fit.n_unknowns}"
                    + ("" if fit.identifiable else " (NOT identifiable)"), fontsize=11)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")


def _outliers(fit, input, output):
    """A robust fit's outliers over the image (any channel), or None."""
    if not getattr(fit, "robust", None):
        return None
    mask = fit.outlier_mask(input, output)
    return mask.any(axis=-1) if mask.ndim > len(fit.size) else mask


def sliding_window_gif(path, image, kernel, *, convention="correlation", stride=1, fps=2,
                       annotate=None, progress=False):
    """Write an animated GIF of 'valid' filtering, one frame per output sample (or stride).

    Panels: the image with the current window outlined, the window's products with the
    kernel, the kernel (flipped first for convolution), and the output filling in.
    `progress`: True draws a tqdm bar of the frames on stderr; a callable is called as
    ``progress('frames', done, total)``.
    """
    from ._progress import Progress, check_progress

    reporter = Progress(check_progress(progress))
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.patches import Rectangle

    image = np.asarray(image, dtype=float)
    applied = np.asarray(kernel, dtype=float)
    if convention == "convolution":
        applied = np.flip(applied)
    kh, kw = applied.shape
    # the fit's own operator: 'valid' windows and their products with the kernel
    from ._operator import Operator

    operator = Operator(applied.shape, "shared", 1, 1).on(image[np.newaxis, ..., np.newaxis])
    windows = operator.windows()[0, :, :, 0]
    full_output = operator.forward(applied)[0, :, :, 0]
    positions = [(i, j) for i in range(0, full_output.shape[0], stride)
                 for j in range(0, full_output.shape[1], stride)]
    output = np.full(full_output.shape, np.nan)
    if annotate is None:
        annotate = image.size <= 100
    figure = _figure(14, 4.2)
    axes = figure.subplots(1, 4)
    limit = np.abs(full_output).max() or 1.0
    import matplotlib

    def grid(ax, values, title, cmap, vmin, vmax):
        ax.clear()
        ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if annotate:
            colours = matplotlib.colormaps[cmap](
                np.clip((values - vmin) / ((vmax - vmin) or 1.0), 0, 1))
            for (r, c), value in np.ndenumerate(values):
                if np.isfinite(value):
                    red, green, blue, _ = colours[r, c]
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                    ax.text(c, r, f"{value + 0.0:.3g}", ha="center", va="center",
                            fontsize=9, color="white" if dark else "black")

    def draw(frame):
        i, j = positions[frame]
        output[i:i + stride, j:j + stride] = full_output[i:i + stride, j:j + stride]
        grid(axes[0], image, "input, window outlined", "gray", image.min(), image.max())
        axes[0].add_patch(Rectangle((j - 0.5, i - 0.5), kw, kh, fill=False, lw=2.5,
                                    ec="tab:orange"))
        products = windows[i, j] * applied
        spread = np.abs(products).max() + 1e-12
        grid(axes[1], products, f"window x kernel\nsum = {full_output[i, j] + 0.0:.4g}",
             "RdBu_r", -spread, spread)
        grid(axes[2], applied, "kernel" + ("\n(flipped: convolution)"
                                           if convention == "convolution" else
                                           "\n(as given: correlation)"),
             "RdBu_r", -np.abs(applied).max(), np.abs(applied).max())
        grid(axes[3], output, f"output ('valid')\nsample [{i}, {j}]", "RdBu_r", -limit, limit)
        axes[3].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2.5,
                                    ec="tab:orange"))
        return []

    animation = FuncAnimation(figure, draw, frames=len(positions), blit=False)
    with atomic_path(path) as temporary:
        done = reporter.start("frames", len(positions))
        animation.save(temporary, writer=PillowWriter(fps=fps), dpi=80,
                       progress_callback=lambda frame, total: done())
    return len(positions)
