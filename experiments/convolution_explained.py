"""Convolution, explained: the sliding window, frame by frame, and the 1-D example by hand.

Writes the sliding-window animation for the small 5x5 example (a vertical edge and a 3x3
vertical-edge kernel) and for the portrait, and draws [1, 3, 5, 7, 9, 11, 13] * [2, 3, 6, 8]
in 'full' mode one output at a time: the flipped kernel slides along the zero-padded signal.

Run: python experiments/convolution_explained.py [--quick]
Writes convolution_5x5.gif, convolution_portrait.gif and convolution_1d.png (and .csv/.md).
"""

import os

import numpy as np

import kernelfit
from kernelfit import data
from kernelfit.plot import sliding_window_gif

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

SIGNAL = np.array([1, 3, 5, 7, 9, 11, 13])
KERNEL = np.array([2, 3, 6, 8])


def steps():
    """Each output of the full convolution: the padded signal, the flipped kernel's place."""
    padded = np.concatenate([np.zeros(KERNEL.size - 1), SIGNAL, np.zeros(KERNEL.size - 1)])
    flipped = KERNEL[::-1]
    rows = []
    for n in range(SIGNAL.size + KERNEL.size - 1):
        window = padded[n:n + KERNEL.size]
        rows.append(dict(n=n, window=window.astype(int).tolist(),
                         products=(window * flipped).astype(int).tolist(),
                         output=int(window @ flipped)))
    return padded, rows


def draw_1d(padded, rows):
    fig = figure(11, 0.55 * len(rows) + 1.6)
    ax = fig.subplots()
    count = padded.size
    for r, row in enumerate(rows):
        y = -r
        for i, value in enumerate(padded):
            inside = row["n"] <= i < row["n"] + KERNEL.size
            zero_pad = i < KERNEL.size - 1 or i >= KERNEL.size - 1 + SIGNAL.size
            ax.text(i, y, f"{int(value)}", ha="center", va="center", fontsize=9,
                    color="0.6" if zero_pad else "black",
                    bbox=dict(boxstyle="round,pad=0.25", fc="#ffd8a8" if inside else "white",
                              ec="tab:orange" if inside else "0.85"))
        for j, weight in enumerate(KERNEL[::-1]):
            ax.text(row["n"] + j, y - 0.32, f"x{weight}", ha="center", va="center",
                    fontsize=7, color="tab:blue")
        terms = " + ".join(f"{p}" for p in row["products"])
        ax.text(count + 0.3, y, f"y[{row['n']}] = {terms} = {row['output']}", va="center",
                fontsize=9)
    ax.set_xlim(-0.8, count + 9)
    ax.set_ylim(-len(rows) + 0.3, 1.2)
    ax.axis("off")
    ax.text(0, 0.85, "input zero-padded by 3 on each side (grey: padding); orange: the window; "
            "blue: the kernel [2, 3, 6, 8] flipped, as convolution does", fontsize=9)
    fig.suptitle("numpy.convolve([1, 3, 5, 7, 9, 11, 13], [2, 3, 6, 8], 'full') = "
                 f"{kernelfit.convolve(SIGNAL, KERNEL, mode='full').astype(int).tolist()}",
                 fontsize=11)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    padded, rows = steps()
    assert [row["output"] for row in rows] == np.convolve(SIGNAL, KERNEL).tolist()
    write_table([dict(n=row["n"], window=row["window"], products=row["products"],
                      output=row["output"]) for row in rows], args.out,
                stem("convolution_1d", args))
    save(draw_1d(padded, rows), args.out, stem("convolution_1d", args))
    small = np.array([[10.0, 10, 10, 0, 0]] * 5)
    edge = np.array([[1.0, 0, -1]] * 3)
    sliding_window_gif(os.path.join(args.out, stem("convolution_5x5", args) + ".gif"),
                       small, edge, convention="correlation", fps=1.5)
    from PIL import Image

    width = 16 if args.quick else 32
    photo = data.portrait()
    height = round(photo.shape[0] * width / photo.shape[1])
    small_photo = np.asarray(Image.fromarray(photo).resize((width, height),
                                                           Image.Resampling.LANCZOS), float)
    sliding_window_gif(os.path.join(args.out, stem("convolution_portrait", args) + ".gif"),
                       small_photo, edge, convention="correlation", stride=4 if args.quick
                       else 3, fps=4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
