"""Quickstart: hide a kernel in an 8-bit filtered copy of a real photograph, then recover it.

Run: python experiments/quickstart.py
"""

import time
import warnings

import numpy as np

import kernelfit
from kernelfit import data, kernels, synth


def main():
    image = data.portrait()  # Grace Hopper, 600 x 512 uint8, from matplotlib's sample data
    hidden = kernels.unsharp_mask(sigma=1.0, amount=0.6, size=5)
    output = synth.synthesize(image, hidden, boundary="edge", dtype=np.uint8)
    print(f"input: portrait {image.shape} {image.dtype}; output: the same photograph "
          f"sharpened by a hidden 5x5 kernel, rounded and clipped to uint8")

    start = time.perf_counter()
    fit = kernelfit.fit_kernel(image, output, 5)
    elapsed = time.perf_counter() - start
    print(f"\n{fit}\n")
    with np.printoptions(precision=4, suppress=True, linewidth=120):
        print("true kernel:")
        print(hidden)
        print("error of the recovered kernel (recovered - true):")
        print(fit.kernel - hidden)
    error = np.abs(fit.kernel - hidden).max()
    within = np.abs(fit.kernel - hidden) <= 3 * fit.stderr
    print(f"max |error| = {error:.2e}, largest stderr = {fit.stderr.max():.2e}, "
          f"{within.mean():.0%} of coefficients within 3 stderr; fitted in {elapsed:.2f} s")

    print("\nThe classic under-determined case: a 6x6 image and a 5x5 kernel.")
    small = image[300:306, 250:256]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny = kernelfit.fit_kernel(small, kernelfit.convolve(small, hidden), 5)
    print(f"identifiable: {tiny.identifiable} (rank {tiny.rank} of {tiny.n_unknowns})")
    for warning in caught:
        print(f"warning: {warning.message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
