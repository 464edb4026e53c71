"""Benchmark: what one pass over the pixels buys, as ratios measured in one run.

Each measurement runs in a fresh process (so its peak resident memory is its own, data and
Python included), with one BLAS thread (threadpoolctl): small dense algebra on a shared
machine is faster and steadier so. Times are the best of a few repetitions. The pairs are the
sample portrait mirrored to size (a real photograph's texture) filtered by a random kernel
(float64, noiseless) unless said otherwise; the reference is one scipy.signal.fftconvolve of
the same pair.

| case | what is compared | target |
| default vs checks=False | 2048^2, 15x15 | <= 1.2 |
| default vs fftconvolve | 2048^2, 15x15 | <= 2 |
| size='auto', boundary='auto' vs a fixed fit at max_size | 1024^2 8-bit | <= 3 |
| origin='auto' vs a fixed fit | 63-tap causal FIR, 10^6 samples | <= 2, right origin |
| passes over the pixels | 2048^2, 15x15, counted reads | 1 + 1 |
| large kernel vs fftconvolve | 2048^2, 63x63 | <= 10, < 1 GB |
| growth from 31x31 to 63x63 | 2048^2 | <= (63/31)^3 = 8.4 |
| many pairs vs their fftconvolves | 200 pairs of 256^2, 7x7 | <= 3 |
| memory | 4096^2, 31x31 | < 1.5 GB |

Run: python experiments/one_pass_benchmark.py [--quick] [--seed 0] [--out DIR]
Writes one_pass_benchmark.csv and .md (one_pass_benchmark_quick.* with --quick, which divides
the sides by 4 and the kernels of 31 and 63 taps by 2: a check that it runs, not the targets).
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

try:
    from ._common import CountingArray, arguments, stem, write_table
except ImportError:  # run as a script
    from _common import CountingArray, arguments, stem, write_table


def photograph(shape):
    from kernelfit import data

    photo = data.portrait().astype(float)
    reps = [int(np.ceil(n / m)) for n, m in zip(shape, photo.shape)]
    tiled = np.pad(photo, [(0, (r - 1) * m) for r, m in zip(reps, photo.shape)],
                   mode="symmetric")
    return np.ascontiguousarray(tiled[tuple(slice(0, n) for n in shape)])


def make(case, quick, seed=0):
    """The data of a case: (inputs, outputs, reference function, fit arguments)."""
    import scipy.signal

    from kernelfit import kernels, synth

    scale = 4 if quick else 1
    if case in ("2048-15", "2048-31", "2048-63", "4096-31"):
        side, size = (int(v) for v in case.split("-"))
        side //= scale
        size = size // 2 if quick and size > 15 else size
        image = photograph((side, side))
        kernel = kernels.random((size, size), rng=seed)
        output = scipy.signal.fftconvolve(image, kernel, mode="same")
        return image, output, lambda: scipy.signal.fftconvolve(image, kernel, mode="same"), \
            dict(size=size, kernel=kernel)
    if case == "1024-8bit":
        side = 1024 // scale
        image = photograph((side, side)).astype(np.uint8)
        kernel = kernels.gaussian(5, 1.0)
        output = synth.synthesize(image, kernel, boundary="edge", dtype=np.uint8)
        return image, output, None, dict(size=5, kernel=kernel)
    if case == "fir":
        n = 10 ** 6 // scale
        signal = np.random.default_rng(seed).standard_normal(n)
        fir = scipy.signal.firwin(63, 0.2)
        output = scipy.signal.lfilter(fir, 1, signal)
        return signal, output, None, dict(size=63, kernel=fir)
    if case == "pairs":
        count = 200 // scale
        rng = np.random.default_rng(seed)
        kernel = kernels.random((7, 7), rng=seed + 1)
        photo = photograph((1024, 1024))
        inputs = []
        for i in range(count):
            r, c = rng.integers(0, 1024 - 256, 2)
            inputs.append(np.ascontiguousarray(photo[r:r + 256, c:c + 256]))
        outputs = [scipy.signal.fftconvolve(x, kernel, mode="same") for x in inputs]
        return inputs, outputs, lambda: [scipy.signal.fftconvolve(x, kernel, mode="same")
                                         for x in inputs], dict(size=7, kernel=kernel)
    raise ValueError(case)


CALLS = {
    "default": {},
    "checks=False": dict(checks=False),
    "size=auto,boundary=auto": dict(size="auto", boundary="auto"),
    "fixed at max_size": dict(size=15),
    "origin=auto": dict(origin="auto"),
    "fixed origin": dict(origin=-31),
}


def child(case, call, quick, seed):
    """One measurement in this process: seconds (best of a few), peak memory, details."""
    import warnings

    from threadpoolctl import threadpool_limits

    import kernelfit

    inputs, outputs, reference, info = make(case, quick, seed)
    repeats = 2 if case in ("2048-63", "4096-31") else 1 if call == "passes" else 3
    details = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # first-call costs (imports: a fit of over 400 unknowns imports ARPACK, 0.8 s)
        small = np.random.default_rng(0).standard_normal((96, 96))
        for size in (3, 21):
            kernelfit.fit_kernel(small, kernelfit.convolve(small, np.ones((size, size))), size)
        if call == "fftconvolve":
            function = reference
        elif call == "passes":
            counted = [CountingArray(inputs), CountingArray(outputs)]
            function = lambda: kernelfit.fit_kernel(*counted, info["size"])  # noqa: E731
        else:
            options = dict(CALLS[call])
            size = options.pop("size", info["size"])
            function = lambda: kernelfit.fit_kernel(inputs, outputs, size,  # noqa: E731
                                                    **options)
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            result = function()
            best = min(best, time.perf_counter() - start)
    if call == "passes":
        details["passes"] = "input {:.2f}, output {:.2f}".format(
            *(c.read / int(np.prod(c.shape)) for c in counted))
    elif call != "fftconvolve":
        kernel = info["kernel"]
        found = np.asarray(result.kernel)
        if found.shape == kernel.shape:
            details["max error"] = f"{np.abs(found - kernel).max() / np.abs(kernel).max():.1e}"
        details["found"] = f"size {result.size}, origin {result.origin}, {result.method}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB -> MB on Linux
    print(json.dumps(dict(seconds=best, peak_mb=peak, **details)))


def measure(case, call, quick, seed):
    command = [sys.executable, os.path.abspath(__file__), "--child", case, call, str(seed)] + (
        ["--quick"] if quick else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{case} {call}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# (label, case, call, reference call or None, target)
ROWS = [
    ("default vs checks=False", "2048-15", "default", "checks=False", "<= 1.2"),
    ("default vs fftconvolve", "2048-15", "default", "fftconvolve", "<= 2"),
    ("checks=False vs fftconvolve", "2048-15", "checks=False", "fftconvolve", ""),
    ("passes over the pixels", "2048-15", "passes", None, "1 + 1"),
    ("size, boundary auto vs fixed 15x15", "1024-8bit", "size=auto,boundary=auto",
     "fixed at max_size", "<= 3"),
    ("origin=auto vs fixed origin (63 taps)", "fir", "origin=auto", "fixed origin", "<= 2"),
    ("31x31 vs fftconvolve", "2048-31", "default", "fftconvolve", ""),
    ("63x63 vs fftconvolve", "2048-63", "default", "fftconvolve", "<= 10, < 1 GB"),
    ("200 pairs vs 200 fftconvolves", "pairs", "default", "fftconvolve", "<= 3"),
    ("4096^2, 31x31 vs fftconvolve", "4096-31", "default", "fftconvolve", "< 1.5 GB"),
]


def run(quick, seed):
    rows, cache = [], {}

    def get(case, call):
        if (case, call) not in cache:
            cache[(case, call)] = measure(case, call, quick, seed)
        return cache[(case, call)]

    for label, case, call, against, target in ROWS:
        result = get(case, call)
        reference = get(case, against) if against else None
        ratio = result["seconds"] / reference["seconds"] if reference else float("nan")
        rows.append(dict(
            comparison=label, seconds=f"{result['seconds']:.3f}",
            reference_seconds="" if reference is None else f"{reference['seconds']:.3f}",
            ratio="" if reference is None else f"{ratio:.2f}", target=target,
            peak_mb=f"{result['peak_mb']:.0f}",
            details="; ".join(f"{k} {v}" for k, v in result.items()
                              if k not in ("seconds", "peak_mb"))))
        print(" | ".join(rows[-1].values()), flush=True)
    growth = get("2048-63", "default")["seconds"] / get("2048-31", "default")["seconds"]
    rows.append(dict(comparison="growth 31x31 -> 63x63", seconds="", reference_seconds="",
                     ratio=f"{growth:.2f}", target=f"<= {(63 / 31) ** 3:.1f}", peak_mb="",
                     details="k^3 would be 8.4"))
    print(" | ".join(rows[-1].values()), flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], argv[2], "--quick" in argv, int(argv[3]))
        return 0
    args = arguments(__doc__.splitlines()[0], argv)
    print("comparison | seconds | reference | ratio | target | peak MB | details")
    write_table(run(args.quick, args.seed), args.out, stem("one_pass_benchmark", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
