"""Method comparison: accuracy and time of every method on the same pairs, in one table.

The sample portrait is filtered by a known 5x5 kernel, with Gaussian noise and 8-bit rounding,
and every method recovers it: lstsq (and its dense and statistics paths by name), pinv, ridge
with GCV, TensorFlow with conjugate gradients and with Adam, and the classic pseudoinverse of
the first k*k windows.

Run: python experiments/method_comparison.py [--quick] [--seed 0]
Writes method_comparison.png/.csv/.md to experiments/results/ (or --out).
"""

import time
import warnings

import numpy as np

import kernelfit
from kernelfit import data, kernels, synth

try:
    from ._common import arguments, figure, save, stem, write_table
    from .noise_robustness import classic
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table
    from noise_robustness import classic

METHODS = {
    "lstsq": {},
    "lstsq-dense": dict(method="lstsq-dense"),
    "lstsq-stats": dict(method="lstsq-stats"),
    "pinv": dict(method="pinv"),
    "ridge (gcv)": dict(method="ridge", options={"reg": "gcv"}),
    "tf (cg)": dict(method="tf", options={"verbose": False}),
    "tf (adam, 1000 steps)": dict(method="tf", options={"optimizer": "adam",
                                                        "max_steps": 1000, "verbose": False}),
}


def run(args):
    side = 64 if args.quick else 256
    image = data.portrait()[150:150 + side, 130:130 + side]
    kernel = kernels.unsharp_mask(sigma=1.0, amount=0.7, size=5)
    output = synth.synthesize(image, kernel, noise=1.0, dtype=np.uint8, rng=args.seed)
    methods = dict(METHODS)
    if args.quick:
        methods["tf (adam, 1000 steps)"] = dict(method="tf", options={
            "optimizer": "adam", "max_steps": 50, "verbose": False})
    # warm up TensorFlow's import and tracing so that its time is the fit's own
    kernelfit.fit_kernel(image[:16, :16], output[:16, :16], 3, method="tf",
                         options={"max_steps": 2, "verbose": False}, checks=False)
    rows = []
    for name, options in list(methods.items()) + [("classic pinv (first 25 windows)", None)]:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if options is None:
                found, fit = classic(image.astype(float), output.astype(float), 5), None
            else:
                fit = kernelfit.fit_kernel(image, output, 5, checks=False, **options)
                found = fit.kernel
        seconds = time.perf_counter() - start
        error = np.linalg.norm(found - kernel) / np.linalg.norm(kernel)
        rows.append(dict(method=name, relative_error=f"{error:.3g}",
                         max_abs_error=f"{np.abs(found - kernel).max():.3g}",
                         seconds=f"{seconds:.3f}",
                         equations=fit.n_equations if fit else 25,
                         identifiable="" if fit is None else fit.identifiable,
                         steps="" if fit is None or fit.n_steps is None else fit.n_steps))
    return rows, side


def draw(rows, side):
    fig = figure(12, 4.2)
    error_ax, time_ax = fig.subplots(1, 2)
    names = [row["method"] for row in rows]
    positions = np.arange(len(rows))
    error_ax.barh(positions, [float(r["relative_error"]) for r in rows], color="C0")
    error_ax.set_xscale("log")
    error_ax.set_yticks(positions, names, fontsize=9)
    error_ax.invert_yaxis()
    error_ax.set_xlabel("relative kernel error (log scale)")
    error_ax.set_title("Accuracy", fontsize=10)
    time_ax.barh(positions, [float(r["seconds"]) for r in rows], color="C1")
    time_ax.set_xscale("log")
    time_ax.set_yticks(positions, [""] * len(rows))
    time_ax.invert_yaxis()
    time_ax.set_xlabel("seconds (log scale; 2-core CPU)")
    time_ax.set_title("Time", fontsize=10)
    for ax, key, unit in ((error_ax, "relative_error", ""), (time_ax, "seconds", " s")):
        ax.grid(True, axis="x", which="both", alpha=0.3)
        for position, row in zip(positions, rows):
            ax.text(float(row[key]) * 1.15, position, f"{float(row[key]):.3g}{unit}",
                    va="center", fontsize=8)
        ax.set_xlim(right=ax.get_xlim()[1] * 8)
    fig.suptitle(f"Every method on the same pair: {side}x{side} portrait, 5x5 unsharp mask, "
                 f"noise 1 grey level, 8-bit rounding", fontsize=11)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, side = run(args)
    write_table(rows, args.out, stem("method_comparison", args))
    save(draw(rows, side), args.out, stem("method_comparison", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
