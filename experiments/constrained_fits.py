"""Constrained fits: how much a true constraint buys, against the free fit, as noise grows.

A 15x15 Gaussian blur (sigma 2.5: non-negative, sums to 1, radial, separable) filters the
sample portrait; the output is written as 8-bit (rounding only), or with Gaussian noise of
RMS 1, 2, 4 and 8 grey levels added before the rounding. Each row fits the same output
freely and under one set of constraints (``fit_kernel(constraints=...)``): the kernel's RMS
and largest error against the truth (mean of the seeds), the median reported standard error,
the spread of the pulls (error / standard error: 1 when the errors are calibrated), and the
error relative to the free fit's. Issue 14's target: the separable fit's error on the 8-bit
output at most half the free fit's.

Run: python experiments/constrained_fits.py [--quick] [--seed 0] [--out DIR]
Writes constrained_fits.png/.csv/.md (constrained_fits_quick.* with --quick: a 7x7 kernel
on a crop, two noise levels, one seed).
"""

import time
import warnings

import numpy as np

import kernelfit
from kernelfit import data, kernels

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

FITS = {
    "free": None,
    "nonneg + sum 1": {"nonneg": True, "sum": 1.0},
    "radial": {"symmetry": "radial"},
    "separable": {"rank": 1},
    "rank auto": {"rank": "auto"},
    "separable + nonneg + sum 1": {"rank": 1, "nonneg": True, "sum": 1.0},
}


def run(quick, seed):
    photo = data.portrait()
    size, sigma = (7, 1.2) if quick else (15, 2.5)
    if quick:
        photo = photo[150:350, 150:350]
    noises = [0.0, 2.0] if quick else [0.0, 1.0, 2.0, 4.0, 8.0]
    seeds = [seed] if quick else [seed + i for i in range(3)]
    truth = kernels.gaussian(size, sigma)
    clean = kernelfit.convolve(photo.astype(float), truth)
    rows = []
    for noise in noises:
        results = {name: [] for name in FITS}
        for s in seeds:
            rng = np.random.default_rng(s)
            output = np.clip(np.round(clean + noise * rng.standard_normal(clean.shape)),
                             0, 255).astype(np.uint8)
            for name, constraints in FITS.items():
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # (the warnings are the fit's business)
                    fit = kernelfit.fit_kernel(photo, output, size, constraints=constraints)
                seconds = time.perf_counter() - start
                error = fit.kernel - truth
                held = fit.stderr == 0
                pulls = error[~held] / fit.stderr[~held]
                results[name].append((np.sqrt(np.mean(error ** 2)), np.abs(error).max(),
                                      float(np.median(fit.stderr)), pulls, seconds,
                                      (fit.constraints or {}).get("rank")))
        free_rms = np.mean([r[0] for r in results["free"]])
        for name, runs in results.items():
            rms = float(np.mean([r[0] for r in runs]))
            pulls = np.concatenate([r[3] for r in runs])
            ranks = sorted({r[5] for r in runs if r[5] is not None})
            rows.append({
                "noise_rms": noise, "fit": name,
                "kernel_rms_error": f"{rms:.3g}",
                "kernel_max_error": f"{np.mean([r[1] for r in runs]):.3g}",
                "median_stderr": f"{np.mean([r[2] for r in runs]):.3g}",
                "pull_spread": f"{np.std(pulls):.2f}",
                "error_vs_free": f"{rms / free_rms:.2f}",
                "seconds": f"{np.mean([r[4] for r in runs]):.2f}",
                "rank_found": ",".join(map(str, ranks)),
            })
    return rows, noises


STYLES = {  # fits that coincide (the separable three) stay visible: markers and dashes
    "free": dict(marker="o", linestyle="-", linewidth=2.4),
    "nonneg + sum 1": dict(marker="s", linestyle="--", linewidth=1.4),
    "radial": dict(marker="^", linestyle="-", linewidth=1.4),
    "separable": dict(marker="o", linestyle="-", linewidth=3.5, alpha=0.5),
    "rank auto": dict(marker="x", linestyle="--", linewidth=1.6, markersize=9),
    "separable + nonneg + sum 1": dict(marker="+", linestyle=":", linewidth=1.6,
                                       markersize=11),
}


def plot(rows, noises, path_stem, out, size):
    fig = figure(7.5, 4.4)
    ax = fig.add_subplot()
    rounding = 1 / np.sqrt(12)  # the 8-bit rounding alone is drawn at its own RMS
    for name in FITS:
        mine = [r for r in rows if r["fit"] == name]
        x = [max(r["noise_rms"], rounding) for r in mine]
        ax.plot(x, [float(r["kernel_rms_error"]) for r in mine], label=name, **STYLES[name])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [max(n, rounding) for n in noises]
    ax.set_xticks(ticks, ["rounding\nonly" if n == 0 else f"{n:g}" for n in noises])
    ax.minorticks_off()
    ax.set_xlabel("noise RMS added before the 8-bit rounding (grey levels)")
    ax.set_ylabel("kernel RMS error (mean of the seeds)")
    ax.set_title(f"{size}x{size} Gaussian blur on the 8-bit portrait: constrained vs free")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, title="the three separable fits coincide", title_fontsize=8)
    return save(fig, out, path_stem)


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, noises = run(args.quick, args.seed)
    name = stem("constrained_fits", args)
    write_table(rows, args.out, name)
    path = plot(rows, noises, name, args.out, 7 if args.quick else 15)
    for row in rows:
        print(row)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
