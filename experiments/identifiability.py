"""Identifiability: how many pixels, and how much texture, a k x k kernel needs.

For images of growing size and of four kinds of content (smooth, natural, white noise,
periodic), a 5x5 kernel is fitted to noiseless 'same'-mode data using only the samples that do
not depend on the edge rule. The rank and the condition number of the design say whether the
data determine the kernel. The classic question, a 6x6 image with a 5x5 kernel, is marked.

Run: python experiments/identifiability.py [--quick] [--seed 0]
Writes identifiability.png/.csv/.md to experiments/results/ (or --out).
"""

import warnings

import numpy as np

import kernelfit
from kernelfit import data, kernels

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

SIZE = 5


def contents(side, seed):
    photo = data.portrait().astype(float)
    return {
        "smooth (random field)": data.smooth_field((side, side), correlation_length=4.0,
                                                   rng=seed),
        "natural (portrait)": photo[300 - side // 2:300 - side // 2 + side,
                                    250 - side // 2:250 - side // 2 + side],
        "white noise": data.noise((side, side), rng=seed),
        "periodic (sinusoid)": data.sinusoid((side, side), period=6.0, angle=30.0),
    }


def run(args):
    sides = [6, 8, 12, 24] if args.quick else [5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64, 96]
    kernel = kernels.random((SIZE, SIZE), rng=args.seed)
    rows = []
    for side in sides:
        for content, image in contents(side, args.seed).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", kernelfit.IdentifiabilityWarning)
                fit = kernelfit.fit_kernel(image, kernelfit.convolve(image, kernel), SIZE,
                                           checks=False)
            rows.append(dict(side=side, content=content, equations=fit.n_equations,
                             unknowns=fit.n_unknowns, rank=fit.rank,
                             condition_number=f"{fit.condition_number:.3g}",
                             identifiable=fit.identifiable,
                             kernel_error=f"{np.abs(fit.kernel - kernel).max():.2g}"))
    return rows, sides


def draw(rows, sides):
    fig = figure(13, 5)
    rank_ax, condition_ax = fig.subplots(1, 2)
    markers = iter(["o-", "s--", "^:", "D-"])
    for content in dict.fromkeys(row["content"] for row in rows):
        mine = [row for row in rows if row["content"] == content]
        rank_ax.plot([r["side"] for r in mine], [r["rank"] for r in mine], next(markers),
                     label=content, alpha=0.8, markersize=5)
        condition = [float(r["condition_number"]) for r in mine]
        condition_ax.semilogy([r["side"] for r in mine],
                              [c if np.isfinite(c) else np.nan for c in condition], "o-",
                              label=content)
    rank_ax.axhline(SIZE * SIZE, color="k", ls="--", lw=1)
    rank_ax.text(sides[-1], SIZE * SIZE - 0.5, "25 unknowns", ha="right", va="top")
    classic = [r for r in rows if r["side"] == 6 and r["content"] == "natural (portrait)"]
    if classic:
        rank_ax.annotate("the classic question:\n6x6 image, 5x5 kernel:\n4 equations, rank 4",
                         xy=(6, classic[0]["rank"]), xytext=(14, 6),
                         arrowprops=dict(arrowstyle="->"), fontsize=9)
    rank_ax.set_xscale("log")
    rank_ax.set_xlabel("image side (pixels, log scale)")
    rank_ax.set_ylabel("rank of the design (independent equations)")
    rank_ax.set_title("Rank: (n-4)^2 >= 25 samples, and texture (smooth, natural and noise\n"
                      "coincide; a single sinusoid never gives more than 3)", fontsize=10)
    rank_ax.legend(fontsize=8, loc="center right")
    rank_ax.grid(True, alpha=0.3)
    condition_ax.set_xscale("log")
    condition_ax.set_xlabel("image side (pixels, log scale)")
    condition_ax.set_ylabel("condition number (missing: rank-deficient, infinite)")
    condition_ax.set_title("Conditioning: smooth content amplifies noise in the kernel",
                           fontsize=10)
    condition_ax.legend(fontsize=8)
    condition_ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Identifiability of a 5x5 kernel from noiseless 'same'-mode data "
                 "(interior samples only)", fontsize=11)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, sides = run(args)
    write_table(rows, args.out, stem("identifiability", args))
    save(draw(rows, sides), args.out, stem("identifiability", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
