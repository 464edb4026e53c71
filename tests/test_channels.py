"""Colour channels (channel_axis) and dtypes in the forward model."""

import numpy as np
import pytest
import scipy.ndimage

import kernelfit


@pytest.mark.parametrize("channel_axis", [0, -1, 1])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_spatial_kernel_filters_every_channel_alike(rng, channel_axis, mode):
    image = rng.standard_normal((3, 8, 9)) if channel_axis == 0 else (
        rng.standard_normal((8, 3, 9)) if channel_axis == 1 else rng.standard_normal((8, 9, 3)))
    kernel = rng.standard_normal((3, 2))
    got = kernelfit.convolve(image, kernel, mode=mode, boundary="wrap",
                             channel_axis=channel_axis)
    channels = np.moveaxis(image, channel_axis, 0)
    expected = np.stack([kernelfit.convolve(c, kernel, mode=mode, boundary="wrap")
                         for c in channels], axis=channel_axis % 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("convention", ["convolution", "correlation"])
def test_channel_kernel_sums_channels(rng, convention):
    image = rng.standard_normal((10, 9, 3))
    kernel = rng.standard_normal((3, 4, 3))
    got = kernelfit.convolve(image, kernel, convention=convention, channel_axis=-1,
                             boundary="symmetric")
    expected = sum(kernelfit.convolve(image[..., c], kernel[..., c], convention=convention,
                                      boundary="symmetric") for c in range(3))
    assert got.shape == (10, 9)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_channel_kernel_matches_ndimage_3d_correlation(rng):
    # Summing channels is a 3-D correlation whose channel extent equals the kernel's.
    image = rng.standard_normal((8, 7, 3))
    kernel = rng.standard_normal((3, 3, 3))
    got = kernelfit.correlate(image, kernel, channel_axis=2, boundary="edge")
    expected = scipy.ndimage.correlate(image, kernel, mode="nearest")[..., 1]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channel_axis", [0, -1])
def test_layer_kernel_is_a_convolution_layer(rng, channel_axis):
    image = rng.standard_normal((9, 8, 3))
    kernel = rng.standard_normal((3, 2, 3, 4))  # (kh, kw, C_in, C_out)
    got = kernelfit.correlate(np.moveaxis(image, -1, channel_axis), kernel, mode="valid",
                              channel_axis=channel_axis)
    windows = np.lib.stride_tricks.sliding_window_view(image, (3, 2), axis=(0, 1))
    expected = np.einsum("ijcab,abcd->ijd", windows, kernel)  # as tf.nn.conv2d 'VALID'
    np.testing.assert_allclose(got, np.moveaxis(expected, -1, channel_axis), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype,expected", [
    (np.uint8, np.float64), (np.int32, np.float64), (np.bool_, np.float64),
    (np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64),
    (np.complex64, np.complex64), (np.complex128, np.complex128)])
def test_output_dtype(dtype, expected):
    image = (np.arange(20).reshape(4, 5) % 2).astype(dtype)
    kernel = np.ones((2, 2), dtype=np.float32)
    assert kernelfit.convolve(image, kernel).dtype == expected


def test_integer_input_is_computed_in_float():
    image = np.full((3, 3), 200, dtype=np.uint8)
    out = kernelfit.convolve(image, [[1, 1], [1, 1]], mode="valid")
    np.testing.assert_array_equal(out, np.full((2, 2), 800.0))  # no uint8 wrap-around


def test_complex_fillvalue_promotes_real_data():
    out = kernelfit.convolve(np.ones(3), [1.0, 1.0, 1.0], fillvalue=1j)
    np.testing.assert_allclose(out, [2 + 1j, 3, 2 + 1j])


def test_float32_stays_single_precision_on_the_fft_path(rng):
    x = rng.standard_normal((200, 200)).astype(np.float32)
    k = rng.standard_normal((25, 25)).astype(np.float32)
    out = kernelfit.convolve(x, k, mode="valid")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, kernelfit.convolve(x.astype(float), k.astype(float),
                                                       mode="valid"), rtol=1e-3, atol=1e-3)


def test_inputs_are_not_modified(rng):
    x, k = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    x0, k0 = x.copy(), k.copy()
    kernelfit.convolve(x, k, boundary="reflect", convention="correlation")
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(k, k0)
