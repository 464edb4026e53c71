"""kernelfit: recover the convolution kernel of an unknown linear filter from its input and output.

:func:`fit_kernel` solves the inverse problem and returns a :class:`KernelFit`; the forward
model (:func:`convolve`, :func:`correlate`) lives beside named kernels
(:mod:`kernelfit.kernels`), synthetic data (:mod:`kernelfit.synth`) and sample images
(:mod:`kernelfit.data`).
"""

__version__ = "0.1.0"

from . import data, kernels, plot, synth
from ._convolve import convolve, correlate
from ._fit import fit_kernel
from ._identify import Identification, identify
from ._result import KernelFit
from ._warnings import IdentifiabilityWarning, ModelWarning

__all__ = [
    "IdentifiabilityWarning",
    "Identification",
    "KernelFit",
    "ModelWarning",
    "__version__",
    "convolve",
    "correlate",
    "data",
    "fit_kernel",
    "identify",
    "kernels",
    "plot",
    "synth",
]
