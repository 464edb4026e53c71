"""Benchmark: large images, where the patch matrix no longer fits, in one run on one machine.

For images from 256^2 to 4096^2 (the sample portrait mirrored to size, a real photograph's
texture) and kernels from 3x3 to 31x31, it fits a noiseless pair with
  - lstsq-stats: the exact normal equations by FFT (what method='lstsq' picks for large data),
    and again with 1% of the output samples masked at random (a low-rank correction),
  - lstsq-dense: the patch matrix and its SVD (only where it fits in 1.5 GB),
  - classic: the pseudoinverse of the first k*k windows, as the usual Stack Overflow answer,
and times one scipy.signal.fftconvolve of the same pair as the physical reference. Each
measurement runs in a fresh process, so the peak resident memory (which includes the two
images, 2 x side^2 x 8 bytes, and Python with numpy and scipy) is its own.

Run: python experiments/large_benchmark.py [--quick] [--seed 0] [--out DIR]
Writes large_benchmark.csv and large_benchmark.md (large_benchmark_quick.* with --quick).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

try:
    from ._common import RESULTS, write_table
    from .noise_robustness import classic
except ImportError:  # run as a script
    from _common import RESULTS, write_table
    from noise_robustness import classic

DENSE_LIMIT = 1.5 * 2**30


def make_pair(side, size, seed):
    import scipy.signal

    from kernelfit import data, kernels

    photo = data.portrait().astype(float)
    if side <= min(photo.shape):
        image = photo[:side, :side].copy()
    else:
        image = np.pad(photo, [(0, side - photo.shape[0]), (0, side - photo.shape[1])],
                       mode="symmetric")
    kernel = kernels.random((size, size), rng=seed)
    return image, scipy.signal.fftconvolve(image, kernel, mode="same"), kernel


def child(method, side, size, seed):
    """One measurement in this process: seconds, peak memory, kernel error."""
    import warnings

    import scipy.signal

    import kernelfit

    # Warm up on a small pair: first-call costs are not part of either measurement.
    small, small_output, _ = make_pair(64, 3, seed)
    scipy.signal.fftconvolve(small, small[:3, :3], mode="same")
    fit_method = method.replace("+mask1%", "")
    if method not in ("fftconvolve", "classic"):
        kernelfit.fit_kernel(small, small_output, 3, method=fit_method)
    image, output, kernel = make_pair(side, size, seed)
    start = time.perf_counter()
    if method == "fftconvolve":
        scipy.signal.fftconvolve(image, kernel, mode="same")
        error = float("nan")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mask = None
            if method.endswith("+mask1%"):  # 1% of the output samples left out at random
                mask = np.random.default_rng(seed).random(output.shape) >= 0.01
            found = (classic(image, output, size) if method == "classic" else
                     kernelfit.fit_kernel(image, output, size, method=fit_method,
                                          mask=mask).kernel)
        error = float(np.abs(found - kernel).max() / np.abs(kernel).max())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB -> MB on Linux
    print(json.dumps(dict(seconds=seconds, peak_mb=peak, error=error)))


def measure(method, side, size, seed):
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", method,
                             str(side), str(size), str(seed)], capture_output=True, text=True)
    if result.returncode != 0:
        return dict(seconds=float("nan"), peak_mb=float("nan"), error=float("nan"),
                    failed=result.stderr.strip().splitlines()[-1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(sides, sizes, seed):
    rows = []
    for side in sides:
        for size in sizes:
            reference = measure("fftconvolve", side, size, seed)
            methods = ["lstsq-stats", "lstsq-stats+mask1%", "classic"]
            if (side - size + 1) ** 2 * size * size * 8 <= DENSE_LIMIT:
                methods.insert(1, "lstsq-dense")
            for method in ["fftconvolve"] + methods:
                result = reference if method == "fftconvolve" else measure(method, side, size,
                                                                           seed)
                rows.append(dict(
                    side=side, kernel=f"{size}x{size}", method=method,
                    seconds=f"{result['seconds']:.3f}",
                    x_fftconvolve=f"{result['seconds'] / reference['seconds']:.1f}",
                    peak_mb=f"{result['peak_mb']:.0f}",
                    max_error=("" if np.isnan(result["error"])
                               else f"{result['error']:.1e}")))
                print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 1 min)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=RESULTS, help="folder for the CSV and Markdown tables")
    args = parser.parse_args(argv)
    sides, sizes = ([256, 512], [3, 7]) if args.quick else (
        [256, 512, 1024, 2048, 4096], [3, 7, 15, 31])
    print("side | kernel | method | seconds | x fftconvolve | peak MB | max |error| / max|k|")
    write_table(run(sides, sizes, args.seed), args.out,
          "large_benchmark_quick" if args.quick else "large_benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
