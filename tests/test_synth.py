"""Synthetic pairs: filtering, offset, noise, rounding and clipping."""

import numpy as np
import pytest

import kernelfit
from kernelfit import kernels, synth


def test_noiseless_float_output_is_the_forward_model(rng):
    x, k = rng.standard_normal((12, 10)), kernels.sobel("x")
    np.testing.assert_array_equal(
        synth.synthesize(x, k, boundary="reflect", convention="correlation"),
        kernelfit.correlate(x, k, boundary="reflect"))


def test_offset_and_noise_level(rng):
    x = rng.standard_normal((200, 200))
    clean = kernelfit.convolve(x, kernels.box(3))
    noisy = synth.synthesize(x, kernels.box(3), offset=2.5, noise=0.1, rng=1)
    residual = noisy - clean - 2.5
    assert abs(residual.mean()) < 0.005
    assert abs(residual.std() - 0.1) < 0.003


def test_noise_is_seeded(rng):
    x = rng.standard_normal((8, 8))
    a = synth.synthesize(x, kernels.box(3), noise=1.0, rng=3)
    np.testing.assert_array_equal(a, synth.synthesize(x, kernels.box(3), noise=1.0, rng=3))
    assert not np.array_equal(a, synth.synthesize(x, kernels.box(3), noise=1.0, rng=4))


def test_complex_noise_has_the_stated_standard_deviation(rng):
    x = rng.standard_normal((300, 300)) + 0j
    residual = synth.synthesize(x, [[1.0]], noise=0.5, rng=0) - x
    assert abs(np.sqrt(np.mean(np.abs(residual) ** 2)) - 0.5) < 0.005
    assert abs(residual.real.std() - residual.imag.std()) < 0.01


@pytest.mark.parametrize("dtype,high", [(np.uint8, 255), (np.uint16, 65535), (np.int16, 32767)])
def test_rounds_and_clips_to_integer_dtypes(dtype, high):
    x = np.array([[-10.0, 0.4, 0.6, 2.5, 1e6]])
    out = synth.synthesize(x, [[1.0]], dtype=dtype)
    assert out.dtype == dtype
    low = np.iinfo(dtype).min
    np.testing.assert_array_equal(out, [[max(-10, low), 0, 1, 2, high]])


@pytest.mark.parametrize("rounding,expected", [("half_even", [0, 2, 2, -2]),
                                               ("half_up", [1, 2, 3, -1]),
                                               ("floor", [0, 1, 2, -2])])
def test_rounding_rules(rounding, expected):
    out = synth.quantize([0.5, 1.5, 2.5, -1.5], np.int8, rounding=rounding)
    np.testing.assert_array_equal(out, expected)


def test_portrait_through_an_8bit_pipeline():
    image = kernelfit.data.portrait()
    out = synth.synthesize(image, kernels.gaussian(5, 1.0), boundary="edge", dtype=np.uint8)
    assert out.dtype == np.uint8 and out.shape == image.shape
    exact = kernelfit.convolve(image, kernels.gaussian(5, 1.0), boundary="edge")
    assert np.abs(out - exact).max() <= 0.5


@pytest.mark.parametrize("call,error,message", [
    (lambda: synth.synthesize([1.0, 2.0], [1.0], noise=-1), ValueError,
     r"noise must be a non-negative standard deviation"),
    (lambda: synth.synthesize([1.0, 2.0], [1.0], noise=1j), TypeError,
     r"noise must be a real number"),
    (lambda: synth.synthesize([1.0, 2.0], [1.0], offset="1"), TypeError,
     r"offset must be a real or complex number"),
    (lambda: synth.synthesize([1.0, 2.0], [1.0], dtype=np.float32), ValueError,
     r"dtype must be an integer dtype such as uint8 or uint16; got float32"),
    (lambda: synth.synthesize([1.0, 2.0], [1.0], dtype=np.uint8, rounding="up"), ValueError,
     r"rounding must be one of 'half_even', 'half_up', 'floor'; got 'up'"),
    (lambda: synth.synthesize([1j, 2.0], [1.0], dtype=np.uint8), TypeError,
     r"data must be real to be rounded to an integer dtype"),
    (lambda: synth.synthesize([1.0, 2.0], [1.0], mode="small"), ValueError,
     r"mode must be one of"),
])
def test_synth_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
