"""Real filters: the kernels kernelfit recovers from Pillow and scipy.ndimage (and OpenCV).

Each library filters the sample portrait with its own kernel, rounding and edge rule; kernelfit
finds the size, anchor and edge rule from the data (size='auto', boundary='auto'), recovers the
kernel and names it with identify. Shown side by side with the library's own kernel.

Run: python experiments/real_filters.py [--quick] [--seed 0]
Writes real_filters.png/.csv/.md to experiments/results/ (or --out).
"""

import warnings

import numpy as np
import scipy.ndimage
from PIL import Image, ImageFilter

import kernelfit
from kernelfit import data, identify, kernels
from kernelfit.plot import kernel_panel

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table


def pillow(name):
    kernel_filter = getattr(ImageFilter, name)
    (width, height), scale, offset, weights = kernel_filter.filterargs
    # Pillow's Kernel is a convolution down the rows and a correlation along them
    own = np.array(weights, float).reshape(height, width)[:, ::-1] / scale
    return (f"Pillow {name}", lambda image: np.asarray(Image.fromarray(image).filter(
        kernel_filter)), own, dict(bias=True))


def cases(quick):
    found = [pillow(name) for name in (["SHARPEN", "EMBOSS"] if quick else
                                      ["SHARPEN", "SMOOTH", "EMBOSS", "FIND_EDGES", "BLUR"])]
    found.append(("Pillow GaussianBlur(1.5)", lambda image: np.asarray(
        Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5))),
        kernels.pillow_gaussian_blur(1.5), {}))
    if not quick:
        found.append(("Pillow BoxBlur(1.5)", lambda image: np.asarray(
            Image.fromarray(image).filter(ImageFilter.BoxBlur(1.5))),
            kernels.pillow_box_blur(1.5), {}))
    found += [
        ("scipy.ndimage.gaussian_filter(sigma=1.5)",
         lambda image: scipy.ndimage.gaussian_filter(image.astype(float), 1.5),
         kernels.gaussian(sigma=1.5), {}),
        ("scipy.ndimage.sobel(axis=1)",
         lambda image: scipy.ndimage.sobel(image.astype(float), axis=1),
         kernels.sobel("x"), {}),
    ]
    if not quick:
        found.append(("scipy.ndimage.laplace", lambda image: scipy.ndimage.laplace(
            image.astype(float)), kernels.laplacian(), {}))
    try:  # OpenCV, when it is installed
        import cv2

        found.append(("cv2.GaussianBlur((5, 5), 0)", lambda image: cv2.GaussianBlur(
            image, (5, 5), 0), np.outer(*[cv2.getGaussianKernel(5, 0)[:, 0]] * 2), {}))
    except ImportError:
        pass
    return found


def common(a, b):
    """Two kernels zero-padded, centred, to one shape."""
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]
    return [np.pad(k, [((n - s) // 2, n - s - (n - s) // 2) for s, n in zip(k.shape, shape)])
            for k in (a, b)]


def run(args):
    image = data.portrait()[150:350, 150:350] if args.quick else data.portrait()
    rows, panels = [], []
    for name, apply, own, options in cases(args.quick):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = kernelfit.fit_kernel(image, apply(image), "auto", boundary="auto", **options)
        recovered, own_padded = common(fit.centred()[0], own)
        result = identify(fit)
        boundary = fit.boundary or ("unchanged frame" if fit.boundary_scores and min(
            fit.boundary_scores, key=fit.boundary_scores.get) == "unchanged" else "none")
        rows.append(dict(filter=name, size_found="x".join(map(str, fit.size)),
                         origin=fit.origin, edge_rule=boundary,
                         bias="" if fit.bias is None else f"{fit.bias:.3g}",
                         max_error=f"{np.abs(recovered - own_padded).max():.2g}",
                         identified=result.description if result.matches else
                         f"(closest) {result.description}",
                         rational=result.rational_text() or ""))
        panels.append((name, own_padded, recovered, result))
    return rows, panels


def draw(panels):
    fig = figure(12, 2.9 * len(panels))
    axes = fig.subplots(len(panels), 3, squeeze=False)
    for row, (name, own, recovered, result) in zip(axes, panels):
        kernel_panel(row[0], own, f"{name}: the library's kernel", annotate=own.size <= 49)
        kernel_panel(row[1], recovered, "recovered (size, anchor, edges found)",
                     annotate=recovered.size <= 49)
        difference = recovered - own
        kernel_panel(row[2], difference, f"difference (max {np.abs(difference).max():.1g})",
                     annotate=False)
        label = result.description if result.matches else f"closest: {result.description}"
        if result.rational is not None:
            label += f"\nrational: {result.rational_text()}"
        row[1].set_xlabel(f"identify: {label}", fontsize=8, wrap=True)
    fig.suptitle("Kernels recovered from real libraries' filters on the sample portrait "
                 "(convolution orientation)", fontsize=12)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, panels = run(args)
    write_table(rows, args.out, stem("real_filters", args))
    save(draw(panels), args.out, stem("real_filters", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
