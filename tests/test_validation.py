"""Every error branch of the forward model: a clear message naming the argument."""

import numpy as np
import pytest

import kernelfit

X = np.arange(20.0).reshape(4, 5)
K = np.ones((3, 3))


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(mode="sam"), ValueError, r"mode must be one of 'full', 'same', 'valid'; got 'sam'"),
    (dict(mode=None), ValueError, r"mode must be one of"),
    (dict(boundary="mirror"), ValueError,
     r"boundary must be one of 'constant', 'fill', 'edge', 'wrap', 'symmetric', 'symm', "
     r"'reflect'; got 'mirror'"),
    (dict(convention="conv"), ValueError,
     r"convention must be one of 'convolution', 'correlation'; got 'conv'"),
    (dict(fillvalue="0"), TypeError, r"fillvalue must be a real or complex number"),
    (dict(fillvalue=np.nan), ValueError, r"fillvalue must be finite"),
    (dict(channel_axis=2), ValueError,
     r"channel_axis=2 is out of range for an array with 2 dimensions \(valid: -2 to 1\)"),
    (dict(channel_axis=1.0), TypeError, r"channel_axis must be None or an integer"),
    (dict(origin=2), ValueError, r"origin=\(2, 2\) is out of range .* between -1 and 1"),
    (dict(origin=(0, 0, 0)), ValueError, r"origin must be an integer or a sequence of 2"),
    (dict(origin="a"), ValueError, r"origin must be an integer or a sequence of 2"),
    (dict(origin=1.5), TypeError, r"origin must be an integer or a sequence of 2"),
    (dict(origin=1, mode="full"), ValueError, r"origin must be 0 for mode='full'"),
])
def test_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        kernelfit.convolve(X, K, **kwargs)


@pytest.mark.parametrize("image,kernel,kwargs,error,message", [
    (X, np.ones((5, 3)), dict(mode="valid"), ValueError,
     r"kernel of spatial shape \(5, 3\) is larger than the image's spatial shape \(4, 5\); "
     r"mode='valid'"),
    (X, np.ones(3), {}, ValueError,
     r"kernel must have as many dimensions as image \(2\) when channel_axis is None"),
    (np.ones((4, 5, 3)), np.ones((3, 3, 3, 2, 1)), dict(channel_axis=-1), ValueError,
     r"kernel must have 2 \(spatial\), 3 \(spatial, channels\) or 4"),
    (np.ones((4, 5, 3)), np.ones((3, 3, 4)), dict(channel_axis=-1), ValueError,
     r"kernel axis 2 has length 4 but image has 3 channels on channel_axis=2"),
    (np.ones(5), np.ones(1), dict(channel_axis=0), ValueError,
     r"image must have at least 2 dimensions with a channel_axis"),
    (np.float64(3.0), [1.0], {}, ValueError, r"image must have at least 1 dimension"),
    (np.ones((0, 3)), K, {}, ValueError, r"image must not be empty"),
    (X, np.ones((3, 0)), {}, ValueError, r"kernel must not be empty"),
    (np.where(X > 3, np.nan, X), K, {}, ValueError, r"image contains NaN or infinite values"),
    (X, np.full((3, 3), np.inf), {}, ValueError, r"kernel contains NaN or infinite values"),
    (np.array([["a", "b"]]), K[:1, :2], {}, TypeError,
     r"image must be a numeric array .* got dtype <U1"),
    ([[1, 2], [3]], K, {}, TypeError, r"image must be a numeric array-like"),
    (X, None, {}, TypeError, r"kernel must be a numeric array"),
])
def test_bad_arrays(image, kernel, kwargs, error, message):
    with pytest.raises(error, match=message):
        kernelfit.convolve(image, kernel, **kwargs)


def test_correlate_validates_the_same_way():
    with pytest.raises(ValueError, match=r"boundary must be one of"):
        kernelfit.correlate(X, K, boundary="nearest")


@pytest.mark.parametrize("convention,origin,ok", [
    ("correlation", -1, True), ("correlation", 0, True), ("correlation", 1, False),
    ("correlation", -2, False), ("convolution", 1, True), ("convolution", -1, False)])
def test_origin_range_for_even_kernels(convention, origin, ok):
    if ok:
        kernelfit.convolve(X, np.ones((2, 2)), convention=convention, origin=origin)
    else:
        with pytest.raises(ValueError, match=r"origin=.* is out of range"):
            kernelfit.convolve(X, np.ones((2, 2)), convention=convention, origin=origin)
