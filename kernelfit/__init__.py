"""kernelfit: recover the convolution kernel of an unknown linear filter from its input and output.

The forward model (:func:`convolve`, :func:`correlate`) lives beside named kernels
(:mod:`kernelfit.kernels`), synthetic data (:mod:`kernelfit.synth`) and sample images
(:mod:`kernelfit.data`).
"""

__version__ = "0.1.0"

from . import data, kernels, synth
from ._convolve import convolve, correlate

__all__ = [
    "__version__",
    "convolve",
    "correlate",
    "data",
    "kernels",
    "synth",
]
