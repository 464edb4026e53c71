"""JPEG outputs: the kernel, its size and the diagnosis against JPEG quality.

The sample portrait filtered by a 3x3 box and by a 5x5 Gaussian (sigma 1), written as 8-bit,
then saved as JPEG by Pillow at qualities 100 down to 50 (4:2:0 makes no difference for a
grey image) and read back. Each output is fitted with ``size='auto'`` by least squares, by
``loss='huber'``, and with the constraints a blur meets (``{'nonneg': True, 'sum': 1.0,
'symmetry': 'mirror'}``): the size found, the kernel's largest error against the true
kernel (of the size found, when it is the true size), and whether the residual was
diagnosed as JPEG. Issue 14's target: quality 90 of the 3x3 box, ``size='auto'`` finds 3x3,
the kernel within 0.01, and the report names JPEG.

Run: python experiments/jpeg_outputs.py [--quick] [--out DIR]
Writes jpeg_outputs.png/.csv/.md (jpeg_outputs_quick.* with --quick: a 256^2 crop and three
qualities).
"""

import io
import warnings

import numpy as np
from PIL import Image

import kernelfit
from kernelfit import data, kernels, synth

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

KERNELS = {"3x3 box": np.ones((3, 3)) / 9, "5x5 Gaussian": kernels.gaussian(5, 1.0)}
FITS = {
    "least squares": {},
    "loss='huber'": {"loss": "huber"},
    "nonneg + sum 1 + mirror": {"constraints": {"nonneg": True, "sum": 1.0,
                                                "symmetry": "mirror"}},
}


def jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer))


def run(quick):
    photo = data.portrait()
    if quick:
        photo = photo[150:406, 120:376]
    qualities = [95, 90, 75] if quick else [100, 95, 90, 80, 70, 60, 50]
    rows = []
    for name, kernel in KERNELS.items():
        output = synth.synthesize(photo, kernel, boundary="edge", dtype=np.uint8)
        for quality in qualities:
            compressed = jpeg(output, quality)
            for fit_name, options in FITS.items():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fit = kernelfit.fit_kernel(photo, compressed, "auto", **options)
                named = any("compressed after the filter (JPEG)" in str(w.message)
                            for w in caught)
                error = (float(np.abs(fit.kernel - kernel).max())
                         if fit.kernel.shape == kernel.shape else np.nan)
                rows.append({
                    "kernel": name, "quality": quality, "fit": fit_name,
                    "size_found": "x".join(map(str, fit.size)),
                    "max_error": "" if np.isnan(error) else f"{error:.4f}",
                    "jpeg_named": "yes" if named else "no",
                    "size_search_alone": "x".join(map(str, fit.compression["searched"]))
                    if fit.compression and "searched" in fit.compression else "",
                    "residual_rms": f"{fit.residual_rms:.3g}",
                })
    return rows, qualities


def plot(rows, qualities, path_stem, out):
    fig = figure(9, 3.9)
    axes = fig.subplots(1, len(KERNELS), sharey=True)
    markers = {"least squares": "o", "loss='huber'": "s", "nonneg + sum 1 + mirror": "^"}
    for ax, name in zip(axes, KERNELS):
        for fit_name in FITS:
            mine = [r for r in rows if r["kernel"] == name and r["fit"] == fit_name]
            x = [r["quality"] for r in mine]
            y = [float(r["max_error"]) if r["max_error"] else np.nan for r in mine]
            ax.plot(x, y, marker=markers[fit_name], label=fit_name)
        wrong = sorted({(r["quality"], r["size_found"]) for r in rows
                        if r["kernel"] == name and not r["max_error"]})
        for quality, size in wrong:  # a wrong size found: no error to draw
            ax.annotate(f"{size}\nfound", (quality, 0.001), fontsize=8, ha="center",
                        color="C3")
        ax.axhline(0.01, color="0.5", linestyle=":", linewidth=1)
        ax.set_title(f"{name}, size='auto'", fontsize=10)
        ax.set_xlabel("JPEG quality")
        ax.set_xlim(max(qualities) + 3, min(qualities) - 3)  # (high quality on the left)
        ax.set_xticks(qualities)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("largest kernel error (size found = true)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Blurred portrait saved as JPEG: the kernel recovered against quality "
                 "(dotted: 0.01)", fontsize=11)
    return save(fig, out, path_stem)


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, qualities = run(args.quick)
    name = stem("jpeg_outputs", args)
    write_table(rows, args.out, name)
    path = plot(rows, qualities, name, args.out)
    for row in rows:
        print(row)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
