"""The forward model against numpy, scipy.signal, scipy.ndimage and a by-definition oracle."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import kernelfit
from reference import reference_filter

MODES = ["full", "same", "valid"]
BOUNDARIES = ["fill", "constant", "edge", "wrap", "symmetric", "symm", "reflect"]
CONVENTIONS = ["convolution", "correlation"]
# kernelfit boundary -> scipy.signal.convolve2d boundary, and -> scipy.ndimage mode
SIGNAL_2D = {"fill": "fill", "wrap": "wrap", "symm": "symm", "symmetric": "symm",
             "constant": "fill"}
NDIMAGE = {"constant": "constant", "edge": "nearest", "wrap": "wrap", "symmetric": "reflect",
           "reflect": "mirror"}
KERNEL_SHAPES_2D = [(3, 3), (2, 2), (4, 3), (1, 5), (2, 6), (5, 4)]


def _data(rng, shape, complex_=False):
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if complex_ else x


# --- the worked numbers -------------------------------------------------------------------

def test_seed_numbers_full():
    y = kernelfit.convolve([1, 3, 5, 7, 9, 11, 13], [2, 3, 6, 8], mode="full")
    np.testing.assert_array_equal(y, [2, 9, 25, 55, 93, 131, 169, 177, 166, 104])


def test_seed_numbers_same_and_valid():
    x, k = [1, 3, 5, 7, 9, 11, 13], [2, 4, 6, 8]
    np.testing.assert_array_equal(kernelfit.convolve(x, k, mode="same"),
                                  [10, 28, 60, 100, 140, 180, 190])
    np.testing.assert_array_equal(kernelfit.convolve(x, k, mode="valid"), [60, 100, 140, 180])


# --- scipy.signal.convolve2d / correlate2d: every mode x boundary they share ----------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", list(SIGNAL_2D))
@pytest.mark.parametrize("kshape", KERNEL_SHAPES_2D)
@pytest.mark.parametrize("complex_", [False, True])
def test_convolve_matches_convolve2d(rng, mode, boundary, kshape, complex_):
    x, k = _data(rng, (9, 8), complex_), _data(rng, kshape, complex_)
    expected = scipy.signal.convolve2d(x, k, mode=mode, boundary=SIGNAL_2D[boundary],
                                       fillvalue=0.75)
    got = kernelfit.convolve(x, k, mode=mode, boundary=boundary, fillvalue=0.75)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", list(SIGNAL_2D))
@pytest.mark.parametrize("kshape", KERNEL_SHAPES_2D)
def test_correlate_matches_correlate2d(rng, mode, boundary, kshape):
    x, k = _data(rng, (9, 8), True), _data(rng, kshape, True)
    # correlate2d conjugates the kernel; in 'same' mode with an even size it anchors one
    # sample earlier than scipy.signal.correlate: origin -1 along even axes.
    expected = scipy.signal.correlate2d(x, k.conj(), mode=mode, boundary=SIGNAL_2D[boundary])
    got = kernelfit.correlate(x, k, mode=mode, boundary=boundary)
    if mode == "same" and any(n % 2 == 0 for n in kshape):
        assert not np.allclose(got, expected)
        got = kernelfit.correlate(x, k, mode=mode, boundary=boundary,
                                  origin=tuple(n % 2 - 1 for n in kshape))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --- numpy.convolve and scipy.signal.convolve / correlate in 1-D, 2-D, 3-D ----------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ksize", [1, 2, 3, 4, 7])
def test_convolve_matches_numpy_1d(rng, mode, ksize):
    x, k = _data(rng, 11, True), _data(rng, ksize, True)
    np.testing.assert_allclose(kernelfit.convolve(x, k, mode=mode), np.convolve(x, k, mode),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", [((13,), (4,)), ((7, 9), (3, 2)), ((6, 5, 7), (2, 3, 3)),
                                    ((5, 6, 4), (5, 1, 4))])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_matches_scipy_signal_nd(rng, mode, shapes, complex_, method):
    x, k = _data(rng, shapes[0], complex_), _data(rng, shapes[1], complex_)
    np.testing.assert_allclose(kernelfit.convolve(x, k, mode=mode),
                               scipy.signal.convolve(x, k, mode=mode, method=method),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(kernelfit.correlate(x, k, mode=mode),
                               scipy.signal.correlate(x, k.conj(), mode=mode, method=method),
                               rtol=1e-10, atol=1e-10)


def test_large_problem_uses_scipy_fft_path(rng):
    x, k = rng.standard_normal((300, 280)), rng.standard_normal((21, 17))
    assert scipy.signal.choose_conv_method(x, k, mode="valid") == "fft"
    np.testing.assert_allclose(kernelfit.convolve(x, k, mode="valid"),
                               scipy.signal.convolve(x, k, mode="valid", method="direct"),
                               rtol=1e-9, atol=1e-9)


# --- scipy.ndimage: every edge rule, origins, even kernels --------------------------------

@pytest.mark.parametrize("boundary", list(NDIMAGE))
@pytest.mark.parametrize("shapes", [((12,), (4,)), ((8, 9), (3, 3)), ((8, 9), (2, 5)),
                                    ((5, 6, 7), (3, 2, 3))])
def test_correlate_matches_ndimage_correlate(rng, boundary, shapes):
    x, k = _data(rng, shapes[0]), _data(rng, shapes[1])
    for origin in {0, -(min(shapes[1]) // 2), (min(shapes[1]) - 1) // 2}:
        expected = scipy.ndimage.correlate(x, k, mode=NDIMAGE[boundary], cval=0.5,
                                           origin=origin)
        got = kernelfit.correlate(x, k, boundary=boundary, fillvalue=0.5, origin=origin)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("boundary", list(NDIMAGE))
@pytest.mark.parametrize("kshape", [(3, 3), (4, 4), (2, 3), (5, 2)])
def test_convolve_matches_ndimage_convolve(rng, boundary, kshape):
    x, k = _data(rng, (9, 10)), _data(rng, kshape)
    expected = scipy.ndimage.convolve(x, k, mode=NDIMAGE[boundary])
    # ndimage anchors even kernels one sample earlier: origin + 1 along even axes.
    origin = tuple(1 - n % 2 for n in kshape)
    got = kernelfit.convolve(x, k, boundary=boundary, origin=origin)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --- the by-definition oracle over every combination ---------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_matches_oracle_every_combination(rng, mode, boundary, convention):
    x, k = _data(rng, (7, 6), True), _data(rng, (4, 3), True)
    got = kernelfit.convolve(x, k, mode=mode, boundary=boundary, fillvalue=-1.5,
                             convention=convention)
    expected = reference_filter(x, k, mode, boundary, -1.5, convention)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 3))
    image_shape = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    mode = draw(st.sampled_from(MODES))
    if mode == "valid":
        kernel_shape = tuple(draw(st.integers(1, n)) for n in image_shape)
    else:
        kernel_shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    convention = draw(st.sampled_from(CONVENTIONS))
    origin = (0,) * ndim
    if mode == "same":
        sign = 1 if convention == "correlation" else -1
        origin = tuple(draw(st.integers(-(k // 2), (k - 1) // 2)) * sign for k in kernel_shape)
    return dict(image_shape=image_shape, kernel_shape=kernel_shape, mode=mode,
                boundary=draw(st.sampled_from(BOUNDARIES)), convention=convention,
                origin=origin, seed=draw(st.integers(0, 2**32 - 1)))


@given(problems())
def test_random_shapes_match_oracle(problem):
    rng = np.random.default_rng(problem["seed"])
    x, k = _data(rng, problem["image_shape"]), _data(rng, problem["kernel_shape"])
    args = dict(mode=problem["mode"], boundary=problem["boundary"], fillvalue=0.25,
                convention=problem["convention"], origin=problem["origin"])
    got = kernelfit.convolve(x, k, **args)
    expected = reference_filter(x, k, args["mode"], args["boundary"], 0.25,
                                args["convention"], args["origin"])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


@given(problems())
def test_correlate_is_convolve_with_flipped_kernel_and_mirrored_origin(problem):
    rng = np.random.default_rng(problem["seed"])
    x, k = _data(rng, problem["image_shape"]), _data(rng, problem["kernel_shape"])
    origin = np.asarray(problem["origin"])
    if problem["convention"] == "convolution":  # the strategy drew a convolution origin
        origin = -origin
    args = dict(mode=problem["mode"], boundary=problem["boundary"])
    np.testing.assert_allclose(kernelfit.correlate(x, k, origin=tuple(origin), **args),
                               kernelfit.convolve(x, np.flip(k), origin=tuple(-origin), **args),
                               rtol=1e-10, atol=1e-10)


# --- real libraries' orientation, as the docstring's table states ------------------------

@pytest.mark.parametrize("size", [3, 5])
def test_pillow_kernel_is_convolution_with_columns_reversed(size):
    from PIL import Image, ImageFilter

    image = kernelfit.data.portrait()[200:260, 180:250]
    weights = np.arange(1.0, size * size + 1).reshape(size, size)
    weights[size // 2, size // 2] = 0  # asymmetric, so every orientation differs
    scale = weights.sum()
    filtered = np.asarray(Image.fromarray(image).filter(
        ImageFilter.Kernel((size, size), weights.ravel().tolist(), scale=scale)))
    inner = (slice(size // 2, -(size // 2)),) * 2  # Pillow's border is its own business
    exact = kernelfit.convolve(image, weights[:, ::-1] / scale)
    assert np.abs(filtered[inner] - exact[inner]).max() <= 0.5 + 1e-9
    for wrong in (kernelfit.convolve(image, weights / scale),
                  kernelfit.correlate(image, weights / scale)):
        assert np.abs(filtered[inner] - wrong[inner]).max() > 2
