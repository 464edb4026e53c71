"""Sample images: the portrait photograph shipped with matplotlib, and generated test images.

Nothing is downloaded: the photograph comes from matplotlib's sample data, the rest is made here.
"""

import importlib.util
import os

import numpy as np

from ._validation import check_int_tuple

__all__ = ["checkerboard", "noise", "portrait", "sinusoid", "smooth_field"]


def _shape(shape):
    ndim = len(shape) if np.ndim(shape) else 1
    return check_int_tuple(shape, "shape", ndim, minimum=1)


def _channels(channels):
    if channels is None:
        return ()
    return check_int_tuple(channels, "channels", 1, minimum=1)


def portrait(*, color=False):
    """Grace Hopper's portrait (512 x 600), from matplotlib's sample data.

    Parameters
    ----------
    color : bool, optional
        Return RGB with the channels last instead of grey (ITU-R 601 luma, as Pillow's "L").

    Returns
    -------
    image : (600, 512) or (600, 512, 3) uint8 ndarray

    Examples
    --------
    >>> from kernelfit import data
    >>> data.portrait().shape, data.portrait(color=True).dtype
    ((600, 512), dtype('uint8'))
    """
    from PIL import Image

    spec = importlib.util.find_spec("matplotlib")
    folder = os.path.join(spec.submodule_search_locations[0], "mpl-data", "sample_data")
    with Image.open(os.path.join(folder, "grace_hopper.jpg")) as picture:
        return np.asarray(picture.convert("RGB" if color else "L"))


def noise(shape=(128, 128), *, channels=None, rng=None):
    """White Gaussian noise, standard deviation 1: the best-conditioned input for a fit.

    Examples
    --------
    >>> from kernelfit import data
    >>> data.noise((4, 5), channels=3, rng=0).shape
    (4, 5, 3)
    """
    return np.random.default_rng(rng).standard_normal(_shape(shape) + _channels(channels))


def smooth_field(shape=(128, 128), *, correlation_length=4.0, channels=None, rng=None):
    """A smooth random field: white noise blurred by a Gaussian, scaled to [0, 1].

    Like a natural image, most of its energy is at low frequencies, which makes kernels
    harder to recover. Each channel is an independent field.

    Parameters
    ----------
    shape : int or sequence of int
        Spatial shape.
    correlation_length : float, optional
        Standard deviation of the Gaussian, in samples.
    channels : int or None, optional
        Number of channels (last axis), or None for no channel axis.
    rng : int, numpy.random.Generator or None, optional
        Seed or generator.

    Examples
    --------
    >>> from kernelfit import data
    >>> field = data.smooth_field((32, 32), rng=0)
    >>> float(field.min()), float(field.max())
    (0.0, 1.0)
    """
    import scipy.ndimage

    shape = _shape(shape)
    sigma = (float(correlation_length),) * len(shape) + (0.0,) * len(_channels(channels))
    field = scipy.ndimage.gaussian_filter(noise(shape, channels=channels, rng=rng), sigma,
                                          mode="wrap")
    axes = tuple(range(len(shape)))
    low, high = field.min(axis=axes), field.max(axis=axes)
    return (field - low) / (high - low)


def checkerboard(shape=(128, 128), *, square=8):
    """A checkerboard of 0 and 1 with squares of side `square` samples.

    Periodic, so a fit on it cannot tell apart kernels that differ by a pattern the board
    lacks: a classic under-determined input.

    Examples
    --------
    >>> from kernelfit import data
    >>> data.checkerboard((4, 4), square=2)
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]])
    """
    shape = _shape(shape)
    (square,) = check_int_tuple(square, "square", 1, minimum=1)
    return (np.indices(shape) // square).sum(axis=0) % 2 * 1.0


def sinusoid(shape=(128, 128), *, period=8.0, angle=0.0):
    """A 2-D plane wave in [0, 1]: ``0.5 + 0.5 * cos(2 pi (x cos a - y sin a) / period)``.

    A single frequency: the most under-determined textured input there is.

    Parameters
    ----------
    shape : (int, int)
        Rows and columns.
    period : float, optional
        Wavelength in samples.
    angle : float, optional
        Direction of the wave in degrees, counter-clockwise from the columns' axis as
        displayed.

    Examples
    --------
    >>> from kernelfit import data
    >>> data.sinusoid((1, 4), period=4).round(6)
    array([[1. , 0.5, 0. , 0.5]])
    """
    rows, cols = check_int_tuple(shape, "shape", 2, minimum=1)
    y, x = np.indices((rows, cols), dtype=float)
    a = np.deg2rad(angle)
    return 0.5 + 0.5 * np.cos(2 * np.pi * (x * np.cos(a) - y * np.sin(a)) / float(period))
