"""Noise robustness: kernel error against signal-to-noise ratio, for every method.

A known kernel filters the sample portrait (a natural image) and white noise; Gaussian noise is
added at a range of SNRs; each method recovers the kernel. The error is compared with the
Cramer-Rao bound that the Gram matrix of the windows gives (the least-squares standard errors:
no unbiased estimator does better).

Run: python experiments/noise_robustness.py [--quick] [--seed 0]
Writes noise_robustness.png/.csv/.md to experiments/results/ (or --out).
"""

import warnings

import numpy as np

import kernelfit
from kernelfit import data, kernels, synth

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

METHODS = ["lstsq", "ridge (gcv)", "classic pinv", "tf"]


def classic(image, output, size):
    """The usual answer: the pseudoinverse of the first k*k interior windows."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    rows, cols = np.divmod(np.arange(size * size), windows.shape[1])
    patches = windows[rows, cols].reshape(size * size, size * size)
    targets = output[size // 2:, size // 2:][rows, cols]
    return np.flip(np.linalg.pinv(patches) @ targets).reshape(size, size)


def recover(method, image, output, size):
    if method == "classic pinv":
        return classic(image, output, size), None
    options = {"lstsq": {}, "ridge (gcv)": dict(method="ridge", options={"reg": "gcv"}),
               "tf": dict(method="tf", options={"verbose": False})}[method]
    fit = kernelfit.fit_kernel(image, output, size, checks=False, **options)
    return fit.kernel, fit


def run(args):
    side = 64 if args.quick else 128
    sizes = [3] if args.quick else [3, 5]
    snrs = [40, 20, 0] if args.quick else [50, 40, 30, 20, 10, 0]
    repeats = 2 if args.quick else 5
    methods = METHODS[:3] if args.quick else METHODS
    rng = np.random.default_rng(args.seed)
    sources = {"portrait": data.portrait()[200:200 + side, 180:180 + side].astype(float),
               "white noise": 60 * data.noise((side, side), rng=args.seed) + 128}
    rows = []
    for source, image in sources.items():
        for size in sizes:
            kernel = (kernels.sharpen(0.5) if size == 3 else
                      kernels.unsharp_mask(sigma=1.0, amount=0.7, size=size))
            clean = kernelfit.convolve(image, kernel)
            for snr in snrs:
                noise = np.sqrt(clean.var() / 10 ** (snr / 10))
                errors = {method: [] for method in methods + ["Cramer-Rao bound"]}
                for _ in range(repeats):
                    noisy = synth.synthesize(image, kernel, noise=noise, rng=rng)
                    for method in methods:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            found, fit = recover(method, image, noisy, size)
                        errors[method].append(np.linalg.norm(found - kernel)
                                              / np.linalg.norm(kernel))
                        if method == "lstsq":  # the bound, from the standard errors
                            errors["Cramer-Rao bound"].append(
                                np.sqrt(np.sum(fit.stderr ** 2)) / np.linalg.norm(kernel))
                for method, values in errors.items():
                    rows.append(dict(image=source, kernel=f"{size}x{size}", snr_db=snr,
                                     method=method,
                                     relative_error=f"{np.sqrt(np.mean(np.square(values))):.3g}"))
    return rows, sources, sizes, snrs, methods


def draw(rows, sizes, snrs, methods, args):
    fig = figure(12, 4.6 * len(sizes))
    axes = fig.subplots(len(sizes), 2, squeeze=False)
    styles = {"lstsq": "o-", "ridge (gcv)": "s--", "classic pinv": "^-", "tf": "x:",
              "Cramer-Rao bound": "k--"}
    for r, size in enumerate(sizes):
        for c, source in enumerate(["portrait", "white noise"]):
            ax = axes[r][c]
            for method in methods + ["Cramer-Rao bound"]:
                values = [float(row["relative_error"]) for row in rows
                          if row["image"] == source and row["kernel"] == f"{size}x{size}"
                          and row["method"] == method]
                ax.semilogy(snrs, values, styles[method], label=method,
                            lw=2.5 if method == "Cramer-Rao bound" else 1.5, alpha=0.85)
            ax.set_title(f"{source}, {size}x{size} kernel "
                         f"({'sharpen' if size == 3 else 'unsharp mask'}), "
                         f"{64 if args.quick else 128}x{64 if args.quick else 128} pixels",
                         fontsize=10)
            ax.set_xlabel("signal-to-noise ratio (dB)")
            ax.set_ylabel("relative kernel error |k - k_true| / |k_true|")
            ax.invert_xaxis()
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Kernel error against noise: least squares (and ridge and tf, which coincide "
                 "with it) sits on the Cramer-Rao bound; the classic first-k*k pseudoinverse "
                 "does not", fontsize=11)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, sources, sizes, snrs, methods = run(args)
    write_table(rows, args.out, stem("noise_robustness", args))
    save(draw(rows, sizes, snrs, methods, args), args.out, stem("noise_robustness", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
