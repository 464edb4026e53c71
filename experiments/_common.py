"""What the experiment scripts share: arguments, where results go, tables and figures."""

import argparse
import csv
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def arguments(description, argv, extra=None):
    """Parse the options every script takes: --quick (CI, under a minute), --seed, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a small version that finishes in under a minute (CI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--out", default=RESULTS, help="folder for the figures and tables")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    return args


def stem(name, args):
    """File stem: quick runs never overwrite the committed results."""
    return f"{name}_quick" if args.quick else name


def write_table(rows, folder, stem):
    """Write `rows` (dicts with the same keys) to folder/stem.csv and folder/stem.md."""
    os.makedirs(folder, exist_ok=True)
    header = list(rows[0])
    with open(os.path.join(folder, f"{stem}.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    with open(os.path.join(folder, f"{stem}.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")


def figure(width, height):
    """A matplotlib figure with constrained layout, without pyplot's global state."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(fig, folder, stem):
    path = os.path.join(folder, f"{stem}.png")
    fig.savefig(path, dpi=110)
    return path


class CountingArray:
    """An array read only by slicing, counting the elements read (how many passes a fit
    makes over the pixels: the elements read over the array's size)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, \
            array.ndim
        self.read = 0

    def __getitem__(self, index):
        import numpy as np

        values = np.asarray(self.array[index])
        self.read += values.size
        return values
