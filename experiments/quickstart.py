"""Quickstart: filter the sample portrait with named kernels and check the forward model.

Run: python experiments/quickstart.py
"""

import numpy as np
import scipy.ndimage
import scipy.signal

import kernelfit
from kernelfit import data, kernels, synth


def main():
    image = data.portrait()
    print(f"portrait: {image.shape} {image.dtype}, from matplotlib's sample data")
    cases = [
        ("gaussian sigma=1.5, edge", kernels.gaussian(sigma=1.5), "edge",
         lambda: scipy.ndimage.gaussian_filter(image.astype(float), 1.5, mode="nearest")),
        ("sobel x, symmetric", kernels.sobel("x"), "symmetric",
         lambda: scipy.ndimage.sobel(image.astype(float), axis=-1, mode="reflect")),
        ("box 4x4 (even), fill", kernels.box(4), "fill",
         lambda: scipy.signal.convolve2d(image, kernels.box(4), mode="same")),
    ]
    for name, kernel, boundary, reference in cases:
        ours = kernelfit.convolve(image, kernel, boundary=boundary)
        error = np.abs(ours - reference()).max()
        print(f"  {name:28s} max |kernelfit - scipy| = {error:.2e}")
    blurred = synth.synthesize(image, kernels.motion_blur(9, 30), boundary="edge", noise=1.0,
                               dtype=np.uint8, rng=0)
    print(f"8-bit motion-blurred copy: {blurred.dtype}, range {blurred.min()}..{blurred.max()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
