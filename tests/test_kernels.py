"""Named kernels against scipy.ndimage's and Pillow's own, and their orientation."""

import numpy as np
import pytest
import scipy.ndimage
from PIL import ImageFilter

import kernelfit
from kernelfit import kernels

IMAGE = np.random.default_rng(7).standard_normal((16, 17))

ORIENTED = [
    lambda c: kernels.sobel("x", convention=c),
    lambda c: kernels.sobel(0, ndim=3, convention=c),
    lambda c: kernels.scharr("y", convention=c),
    lambda c: kernels.prewitt(-1, convention=c),
    lambda c: kernels.emboss(convention=c),
    lambda c: kernels.shift((2, -1), convention=c),
    lambda c: kernels.identity((2, 4), convention=c),
]


def _impulse_response(filter_, size, ndim):
    impulse = np.zeros((size,) * ndim)
    impulse[(size // 2,) * ndim] = 1.0
    return filter_(impulse)


@pytest.mark.parametrize("make", ORIENTED)
def test_oriented_kernels_do_the_same_in_both_conventions(make):
    ndim = make("convolution").ndim
    x = np.random.default_rng(1).standard_normal((9,) * ndim)
    np.testing.assert_allclose(kernelfit.convolve(x, make("convolution")),
                               kernelfit.correlate(x, make("correlation")), atol=1e-12)


@pytest.mark.parametrize("sigma", [0.6, 1.0, 1.7, (0.8, 2.1)])
def test_gaussian_from_sigma_is_ndimages_kernel(sigma):
    k = kernels.gaussian(sigma=sigma)
    response = _impulse_response(lambda a: scipy.ndimage.gaussian_filter(a, sigma,
                                                                         mode="constant"),
                                 31, 2)
    centre = 15
    window = tuple(slice(centre - n // 2, centre + n // 2 + 1) for n in k.shape)
    np.testing.assert_allclose(response[window], k, atol=1e-15)
    np.testing.assert_allclose(response.sum(), k.sum())


def test_gaussian_from_size_uses_opencv_sigma_rule_and_even_sizes():
    k = kernels.gaussian(7, ndim=1)
    sigma = 0.3 * ((7 - 1) * 0.5 - 1) + 0.8
    x = np.arange(7) - 3
    np.testing.assert_allclose(k, np.exp(-x**2 / (2 * sigma**2)) / np.exp(
        -x**2 / (2 * sigma**2)).sum())
    even = kernels.gaussian((4, 6), sigma=1.0)
    np.testing.assert_allclose(even, np.flip(even))  # centred between samples
    assert even.argmax() == np.ravel_multi_index((1, 2), (4, 6))
    assert kernels.gaussian(5, 1.0, ndim=3).shape == (5, 5, 5)


def test_box_is_uniform_filter():
    x = IMAGE
    np.testing.assert_allclose(kernelfit.convolve(x, kernels.box(3), boundary="symmetric"),
                               scipy.ndimage.uniform_filter(x, 3, mode="reflect"), atol=1e-12)


@pytest.mark.parametrize("name", ["sobel", "prewitt"])
@pytest.mark.parametrize("axis,ndim", [(0, 2), (1, 2), (-1, 2), (0, 1), (1, 3)])
@pytest.mark.parametrize("convention", ["convolution", "correlation"])
def test_gradients_match_ndimage(name, axis, ndim, convention):
    x = np.random.default_rng(3).standard_normal((8,) * ndim)
    k = getattr(kernels, name)(axis, ndim=ndim, convention=convention)
    got = kernelfit.convolve(x, k, boundary="symmetric", convention=convention)
    np.testing.assert_allclose(got, getattr(scipy.ndimage, name)(x, axis=axis, mode="reflect"),
                               atol=1e-12)


def test_axis_names():
    np.testing.assert_array_equal(kernels.sobel("x"), kernels.sobel(1))
    np.testing.assert_array_equal(kernels.sobel("y"), kernels.sobel(0))
    np.testing.assert_array_equal(kernels.sobel("z", ndim=3), kernels.sobel(0, ndim=3))
    # A positive x-gradient for data increasing along the columns.
    ramp = np.tile(np.arange(6.0), (5, 1))
    assert np.all(kernelfit.convolve(ramp, kernels.sobel("x"), mode="valid") == 8)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_laplacian_is_ndimage_laplace(ndim):
    x = np.random.default_rng(4).standard_normal((7,) * ndim)
    np.testing.assert_allclose(kernelfit.convolve(x, kernels.laplacian(ndim=ndim),
                                                  boundary="edge"),
                               scipy.ndimage.laplace(x, mode="nearest"), atol=1e-12)


def test_edge_detection_and_sharpen_match_pillow_and_laplace():
    find_edges = np.array(ImageFilter.FIND_EDGES.filterargs[3], float).reshape(3, 3)
    np.testing.assert_array_equal(kernels.edge_detection(), find_edges)
    np.testing.assert_allclose(kernelfit.convolve(IMAGE, kernels.sharpen(0.7)),
                               IMAGE - 0.7 * scipy.ndimage.laplace(IMAGE, mode="constant"),
                               atol=1e-12)
    assert kernels.edge_detection(ndim=3)[1, 1, 1] == 26


def test_unsharp_mask_is_image_plus_amount_times_detail():
    k = kernels.unsharp_mask(sigma=1.2, amount=0.8)
    blurred = scipy.ndimage.gaussian_filter(IMAGE, 1.2, mode="wrap")
    np.testing.assert_allclose(kernelfit.convolve(IMAGE, k, boundary="wrap"),
                               IMAGE + 0.8 * (IMAGE - blurred), atol=1e-12)
    with pytest.raises(ValueError, match=r"size must be odd along every axis"):
        kernels.unsharp_mask(size=4)


@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("offset", [3, -2, (1, -3), (0, 2, -1)])
def test_shift_moves_content_like_roll(offset, convention):
    offsets = (offset,) if np.isscalar(offset) else offset
    x = np.random.default_rng(5).standard_normal((8,) * len(offsets))
    got = kernelfit.convolve(x, kernels.shift(offset, convention=convention), boundary="wrap",
                             convention=convention)
    np.testing.assert_allclose(got, np.roll(x, offsets, axis=tuple(range(len(offsets)))))


@pytest.mark.parametrize("size", [1, 2, 3, 4, (2, 5), (4, 3)])
@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("boundary", ["fill", "reflect"])
def test_identity_leaves_data_unchanged(size, convention, boundary):
    k = kernels.identity(size, convention=convention)
    np.testing.assert_allclose(kernelfit.convolve(IMAGE, k, convention=convention,
                                                  boundary=boundary), IMAGE)


@pytest.mark.parametrize("length", [1, 2, 3, 4.5, 7, 10])
@pytest.mark.parametrize("angle", [0, 30, 45, 90, 135, -60])
def test_motion_blur_is_normalised_point_symmetric_and_oriented(length, angle):
    k = kernels.motion_blur(length, angle)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    np.testing.assert_allclose(k.sum(), 1.0)
    np.testing.assert_allclose(k, np.flip(k), atol=1e-12)
    assert k.min() >= 0
    if length >= 3:
        # The weighted second moments point along the motion (rows grow downwards).
        y, x = np.indices(k.shape) - k.shape[0] // 2
        direction = np.array([np.cos(np.deg2rad(angle)), -np.sin(np.deg2rad(angle))])
        cov = np.cov(np.stack([x.ravel(), y.ravel()]), aweights=k.ravel())
        w, v = np.linalg.eigh(cov)
        assert abs(v[:, -1] @ direction) > 0.99


def test_motion_blur_lengths():
    np.testing.assert_allclose(kernels.motion_blur(4)[2], [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(kernels.motion_blur(5, 90), kernels.motion_blur(5).T, atol=1e-12)


@pytest.mark.parametrize("radius,ndim,count", [(1, 2, 5), (2, 2, 13), (2.5, 2, 21), (1, 3, 7),
                                               (0.5, 2, 1)])
def test_disk(radius, ndim, count):
    k = kernels.disk(radius, ndim=ndim)
    assert np.count_nonzero(k) == count
    np.testing.assert_allclose(k.sum(), 1.0)


def test_random_is_seeded():
    np.testing.assert_array_equal(kernels.random((3, 4), rng=1), kernels.random((3, 4), rng=1))
    assert kernels.random(5, rng=0).shape == (5,)


@pytest.mark.parametrize("call,message", [
    (lambda: kernels.gaussian(), r"gaussian needs size, sigma, or both"),
    (lambda: kernels.gaussian(sigma=-1), r"sigma must be a positive finite number"),
    (lambda: kernels.gaussian((5, 5), sigma=(1, 2, 3)), r"sigma must be a number or a sequence of 2"),
    (lambda: kernels.gaussian(0), r"size must be at least 1 along every axis"),
    (lambda: kernels.box(3, ndim=0), r"ndim must be a positive integer"),
    (lambda: kernels.sobel("w"), r"axis must be an integer or one of 'x', 'y', 'z'"),
    (lambda: kernels.sobel(2), r"axis=2 is out of range for an array with 2 dimensions"),
    (lambda: kernels.emboss(convention="flip"), r"convention must be one of"),
    (lambda: kernels.motion_blur(0), r"length must be a positive finite number"),
    (lambda: kernels.disk(np.inf), r"radius must be a positive finite number"),
    (lambda: kernels.shift(1.5), r"offset must be an integer"),
])
def test_kernel_argument_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.parametrize("make,pillow,levels", [
    (lambda: kernels.pillow_box_blur(1.5), lambda: ImageFilter.BoxBlur(1.5), 1.0),
    (lambda: kernels.pillow_box_blur(2), lambda: ImageFilter.BoxBlur(2), 1.0),
    (lambda: kernels.pillow_gaussian_blur(1.5), lambda: ImageFilter.GaussianBlur(1.5), 2.0),
])
def test_pillow_blurs_are_pillows_own(make, pillow, levels):
    from PIL import Image
    image = kernelfit.data.portrait()[200:300, 200:300]
    kernel = make()
    theirs = np.asarray(Image.fromarray(image).filter(pillow())).astype(float)
    ours = kernelfit.convolve(image, kernel, boundary="edge")
    # Pillow clamps edges in each pass: compare the interior. It rounds half up to 8 bits
    # after each pass (2 for a box, 6 for the Gaussian): within that many half levels, and
    # at most a quarter level on average.
    inner = (slice(kernel.shape[0] // 2, -(kernel.shape[0] // 2)),) * 2
    assert np.abs(theirs - ours)[inner].max() <= levels
    assert abs((theirs - ours)[inner].mean()) < 0.3
