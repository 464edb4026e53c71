"""Reverse-engineering real filters from real libraries, on the sample photograph.

Each filter is applied by its own library (with its 8-bit rounding and clipping where it has
them); kernelfit must find the size, anchor and edge rule, recover the library's kernel within
a stated tolerance, and name it.
"""

import os
import warnings

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image, ImageFilter

import kernelfit
from kernelfit import data, fit_kernel, identify, kernels

PHOTO = data.portrait()[150:350, 150:350]


def _pillow(kernel_filter):
    size, scale, offset, weights = kernel_filter.filterargs
    # Pillow's Kernel is a convolution down the rows and a correlation along them.
    return (np.array(weights, float).reshape(size[::-1])[:, ::-1] / scale, offset)


def _auto(image, output, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kernelfit.IdentifiabilityWarning)
        return fit_kernel(image, output, "auto", boundary="auto", **options)


def _same(found, expected, atol):
    size = [max(a, b) for a, b in zip(found.shape, expected.shape)]
    pad = [lambda k, n=n: np.pad(k, [((n - s) // 2, (n - s) // 2) for s, n in
                                      zip(k.shape, size)]) for n in [0]]
    del pad
    grown = [np.pad(k, [((n - s) // 2, (n - s) - (n - s) // 2) for s, n in zip(k.shape, size)])
             for k in (found, expected)]
    np.testing.assert_allclose(grown[0], grown[1], atol=atol)


@pytest.mark.parametrize("name,family,rational", [
    ("BLUR", "pillow_filter", "[[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 0, 1], "
                              "[1, 0, 0, 0, 1], [1, 1, 1, 1, 1]] / 16"),
    ("SMOOTH", "pillow_filter", "[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13"),
    ("SHARPEN", "sharpen", "[[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]] / 8"),
    ("DETAIL", "sharpen", "[[ 0, -1, 0], [-1, 10, -1], [ 0, -1, 0]] / 6"),
    ("EDGE_ENHANCE", "sharpen", "[[-1, -1, -1], [-1, 10, -1], [-1, -1, -1]] / 2"),
    ("EMBOSS", "emboss", "[[ 0,  0, -1], [ 0,  1,  0], [ 0,  0,  0]]"),
    ("FIND_EDGES", "edge_detection", "[[-1, -1, -1], [-1,  8, -1], [-1, -1, -1]]"),
    ("CONTOUR", "edge_detection", "[[-1, -1, -1], [-1,  8, -1], [-1, -1, -1]]"),
])
def test_pillow_builtin_filters(name, family, rational):
    kernel_filter = getattr(ImageFilter, name)
    expected, offset = _pillow(kernel_filter)
    output = np.asarray(Image.fromarray(PHOTO).filter(kernel_filter))
    fit = _auto(PHOTO, output, bias=True)
    # Pillow leaves a frame of the nominal kernel's half-width unchanged: no rule applies
    assert fit.boundary is None and min(fit.boundary_scores, key=fit.boundary_scores.get) \
        == "unchanged"
    _same(fit.centred()[0], expected, atol=2e-3)
    # (Pillow rounds half up: a kernel over 2 puts half the outputs on .5, a bias of +0.25)
    assert fit.bias == pytest.approx(offset, abs=0.3)
    result = identify(fit)
    assert result.rational_text() == rational
    if family is not None:
        assert result.matches and result.name == family, result.description


@pytest.mark.parametrize("radius", [1, 1.5])
def test_pillow_box_blur(radius):
    output = np.asarray(Image.fromarray(PHOTO).filter(ImageFilter.BoxBlur(radius)))
    fit = _auto(PHOTO, output)
    assert fit.boundary in ("edge", "symmetric") if radius == 1 else fit.boundary == "edge"
    _same(fit.kernel, kernels.pillow_box_blur(radius), atol=2e-3)
    result = identify(fit)
    assert result.matches and result.name == ("box" if radius == 1 else "pillow_box_blur")


def test_pillow_gaussian_blur():
    output = np.asarray(Image.fromarray(PHOTO).filter(ImageFilter.GaussianBlur(1.5)))
    fit = _auto(PHOTO, output)
    _same(fit.kernel, kernels.pillow_gaussian_blur(1.5), atol=3e-3)
    result = identify(fit)
    assert result.matches and result.name == "pillow_gaussian_blur"
    assert result.parameters["radius"] == pytest.approx(1.5, abs=0.05)
    # (three clamped box passes match no single edge rule exactly; the closest is reported)
    assert fit.boundary_scores


@pytest.mark.parametrize("name,apply,expected,family", [
    ("gaussian_filter", lambda x: scipy.ndimage.gaussian_filter(x, 1.5),
     kernels.gaussian(sigma=1.5), "gaussian"),
    ("uniform_filter", lambda x: scipy.ndimage.uniform_filter(x, 4), kernels.box(4), "box"),
    ("sobel", lambda x: scipy.ndimage.sobel(x, axis=1), kernels.sobel("x"), "sobel"),
    ("prewitt", lambda x: scipy.ndimage.prewitt(x, axis=0), kernels.prewitt("y"), "prewitt"),
    ("laplace", scipy.ndimage.laplace, kernels.laplacian(), "laplacian"),
])
def test_scipy_ndimage_filters_with_their_default_edge_mode(name, apply, expected, family):
    image = PHOTO.astype(float)
    fit = _auto(image, apply(image))
    assert fit.size == expected.shape
    # ndimage's default 'reflect' is kernelfit's 'symmetric' (the same as 'edge' for 3x3)
    assert fit.boundary == "symmetric" if max(expected.shape) > 3 else fit.boundary in (
        "edge", "symmetric")
    np.testing.assert_allclose(fit.kernel, expected, atol=1e-8)
    result = identify(fit)
    assert result.matches and result.name == family, result.description
    if name == "gaussian_filter":
        assert "scipy.ndimage" in result.description


def test_scipy_ndimage_on_8_bit_data():
    # ndimage filters uint8 images in separable passes, truncating to uint8 in between:
    # about one grey level lost, which a bias absorbs.
    output = scipy.ndimage.gaussian_filter(PHOTO, 1.0)
    fit = fit_kernel(PHOTO, output, "auto", bias=True)
    assert fit.bias == pytest.approx(-1.0, abs=0.2)
    _same(fit.kernel, kernels.gaussian(sigma=1.0), atol=5e-3)
    result = identify(fit)
    assert result.matches and result.name == "gaussian", result.description


def test_tensorflow_conv2d_same_padding_anchors_even_kernels_early():
    if os.environ.get("CI"):
        tf = __import__("tensorflow")
    else:
        tf = pytest.importorskip("tensorflow")
    image = PHOTO.astype(float)
    kernel = kernels.random((4, 4), rng=3)
    output = tf.nn.conv2d(image[None, :, :, None], kernel[:, :, None, None], strides=1,
                          padding="SAME").numpy()[0, :, :, 0]
    fit = _auto(image, output, convention="correlation")
    assert fit.size == (4, 4) and fit.origin == (-1, -1) and fit.boundary == "fill"
    np.testing.assert_allclose(fit.kernel, kernel, atol=1e-8)


def test_shifted_output_is_located():
    image = PHOTO.astype(float)
    output = kernelfit.convolve(image, kernels.shift((2, -1)), boundary="wrap")
    fit = _auto(image, output)
    result = identify(fit)
    assert result.name == "shift" and result.parameters["offset"] == (2, -1)
    assert fit.boundary == "wrap"


def test_size_auto_reports_candidates_and_negligible_coefficients():
    image = PHOTO.astype(float)
    output = kernelfit.synth.synthesize(image, kernels.gaussian(5, 1.0), noise=0.5, rng=0)
    fit = fit_kernel(image, output, "auto", max_size=11)
    assert fit.size == (5, 5) or fit.size == (7, 7)
    assert len(fit.size_scores) >= 5
    assert min(fit.size_scores, key=fit.size_scores.get)[0] == fit.size
    assert "size found" in str(fit)
    larger = fit_kernel(image, output, 9)  # a support larger than the kernel
    corners = larger.negligible[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.all()  # coefficients indistinguishable from zero are reported as such


def test_model_checks_warn_about_gamma_and_shift_variance():
    image = PHOTO.astype(float)
    linear = kernelfit.convolve(image, kernels.gaussian(5, 1.0))
    gamma = 255 * (linear / 255) ** 2.2
    with pytest.warns(kernelfit.ModelWarning, match=r"not linear in the input"):
        fit_kernel(image, gamma, 5)
    top = kernelfit.convolve(image, kernels.gaussian(5, 0.8))
    bottom = kernelfit.convolve(image, kernels.gaussian(5, 1.6))
    varying = np.where(np.arange(200)[:, None] < 100, top, bottom)
    with pytest.warns(kernelfit.ModelWarning, match=r"not shift-invariant"):
        fit_kernel(image, varying, 5)
