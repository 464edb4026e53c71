"""Benchmark: the TensorFlow path against lstsq, time to tolerance and final error.

For several image and kernel sizes, on white noise and on the sample photograph (noiseless),
it fits the same pair with method='lstsq' and method='tf' (each optimizer asked for) and
reports wall time, steps, why it stopped, the kernel's error relative to lstsq, and the device.
Timings are from one run on one machine: compare the rows with each other, not across machines.

Run: python experiments/tf_benchmark.py [--quick] [--optimizers cg adam] [--seed 0] [--out DIR]
Writes tf_benchmark.csv and tf_benchmark.md (tf_benchmark_quick.* with --quick) to
experiments/results/ or DIR.
"""

import argparse
import time

import numpy as np

import kernelfit
from kernelfit import data, kernels

try:
    from ._common import RESULTS, write_table
except ImportError:  # run as a script
    from _common import RESULTS, write_table



def _pair(source, side, size, seed):
    if source == "noise":
        image = data.noise((side, side), rng=seed)
    else:
        portrait = data.portrait().astype(float)
        top, left = (portrait.shape[0] - side) // 2, (portrait.shape[1] - side) // 2
        image = portrait[top:top + side, left:left + side]
    kernel = kernels.random((size, size), rng=seed + 1)
    return image, kernelfit.convolve(image, kernel)


def run(sides, sizes, optimizers, seed, max_steps):
    # Warm up: TensorFlow's import and first trace are not part of any fit's time.
    warm = data.noise((16, 16), rng=0)
    kernelfit.fit_kernel(warm, warm, 3, method="tf", options={"max_steps": 2})
    rows = []
    for source in ("noise", "portrait"):
        for side in sides:
            for size in sizes:
                image, output = _pair(source, side, size, seed)
                start = time.perf_counter()
                reference = kernelfit.fit_kernel(image, output, size)
                lstsq_time = time.perf_counter() - start
                for optimizer in optimizers:
                    start = time.perf_counter()
                    fit = kernelfit.fit_kernel(image, output, size, method="tf", options={
                        "optimizer": optimizer, "max_steps": max_steps, "verbose": False})
                    elapsed = time.perf_counter() - start
                    error = (np.abs(fit.kernel - reference.kernel).max()
                             / np.abs(reference.kernel).max())
                    rows.append(dict(
                        image=source, side=side, kernel=f"{size}x{size}",
                        condition=f"{reference.condition_number:.3g}", optimizer=optimizer,
                        steps=fit.n_steps, stopped=fit.stop_reason,
                        tf_seconds=f"{elapsed:.2f}", lstsq_seconds=f"{lstsq_time:.3f}",
                        error_vs_lstsq=f"{error:.1e}", device=fit.device))
                    print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 1 min)")
    parser.add_argument("--optimizers", nargs="+", default=["cg"],
                        choices=["cg", "adam", "sgd", "momentum"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--out", default=RESULTS, help="folder for the CSV and Markdown tables")
    args = parser.parse_args(argv)
    sides, sizes = ([48], [3, 5]) if args.quick else ([64, 128, 256], [3, 5, 9])
    print("image | side | kernel | condition | optimizer | steps | stopped | tf s | lstsq s | "
          "error vs lstsq | device")
    rows = run(sides, sizes, args.optimizers, args.seed, args.max_steps)
    write_table(rows, args.out, "tf_benchmark_quick" if args.quick else "tf_benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
