"""identify: the families, their parameters, separability and rational forms."""

import numpy as np
import pytest

import kernelfit
from kernelfit import data, identify, kernels


@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("make,name,parameters", [
    (lambda c: kernels.gaussian(sigma=1.2), "gaussian", {"sigma": 1.2}),
    (lambda c: kernels.gaussian(7, 1.0), "gaussian", {"sigma": 1.0}),
    (lambda c: kernels.box(3), "box", {"shape": (3, 3)}),
    (lambda c: kernels.disk(2), "disk", {"radius": 2.0}),
    (lambda c: kernels.motion_blur(7, 30), "motion_blur", {"length": 7.0, "angle": 30.0}),
    (lambda c: kernels.sobel("x", convention=c), "sobel", {"axis": "x", "scale": 1.0}),
    (lambda c: 0.125 * kernels.sobel("y", convention=c), "sobel", {"axis": "y", "scale": 0.125}),
    (lambda c: kernels.scharr("y", convention=c), "scharr", {"axis": "y"}),
    (lambda c: kernels.prewitt("x", convention=c), "prewitt", {"axis": "x"}),
    (lambda c: kernels.laplacian(), "laplacian", {"diagonal": False}),
    (lambda c: kernels.edge_detection(), "edge_detection", {}),
    (lambda c: kernels.sharpen(0.5), "sharpen", {"amount": 0.5, "diagonal": False}),
    (lambda c: kernels.unsharp_mask(1.0, 0.6, size=7), "unsharp_mask",
     {"amount": 0.6, "sigma": 1.0}),
    (lambda c: kernels.emboss(convention=c), "emboss", {}),
    (lambda c: kernels.identity(3), "identity", {}),
    (lambda c: kernels.shift((1, -2), convention=c), "shift", {"offset": (1, -2)}),
    (lambda c: kernels.pillow_gaussian_blur(1.5), "pillow_gaussian_blur", {"radius": 1.5}),
    (lambda c: kernels.pillow_box_blur(1.5), "pillow_box_blur", {"radius": 1.5}),
    (lambda c: kernels.pillow_box_blur(2.0), "box", {"shape": (5, 5)}),  # whole radius: a box
])
def test_families_are_named_with_their_parameters(make, name, parameters, convention):
    result = identify(make(convention), convention=convention)
    assert result.matches and result.name == name, result.description
    for key, value in parameters.items():
        got = result.parameters[key]
        if isinstance(value, float):
            assert got == pytest.approx(value, abs=2e-3), key
        else:
            assert got == value, key


def test_gaussian_discretisations_are_told_apart():
    assert "scipy.ndimage" in identify(kernels.gaussian(sigma=1.2)).description
    assert "OpenCV's default" in identify(kernels.gaussian(7, 1.0)).description
    table = np.outer([0.0625, 0.25, 0.375, 0.25, 0.0625], [0.0625, 0.25, 0.375, 0.25, 0.0625])
    assert "OpenCV's 5x5 table" in identify(table).description


def test_rational_forms():
    sharpen = np.array([[-2, -2, -2], [-2, 32, -2], [-2, -2, -2]]) / 16
    result = identify(sharpen)
    assert result.rational_text() == "[[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]] / 8"
    numerators, denominator = result.rational
    np.testing.assert_array_equal(numerators / denominator, sharpen)
    assert identify(kernels.box(3)).rational_text() == "[[1, 1, 1], [1, 1, 1], [1, 1, 1]] / 9"
    assert identify(kernels.gaussian(sigma=1.0)).rational is None  # no coincidences


def test_separability():
    gaussian = identify(kernels.gaussian(5, 1.0))
    assert gaussian.separable and gaussian.rank == 1
    column, row = gaussian.factors
    np.testing.assert_allclose(np.outer(column, row), kernels.gaussian(5, 1.0), atol=1e-12)
    np.testing.assert_allclose(column.sum(), 1.0)
    laplacian = identify(kernels.laplacian())
    assert not laplacian.separable and laplacian.rank == 2
    assert "not separable: rank 2" in str(laplacian)


def test_unknown_kernels_say_so_and_give_the_closest():
    result = identify(kernels.random((3, 3), rng=0))
    assert result.name == "unknown" and not result.matches
    assert str(result).startswith("closest: ")
    assert len(result.candidates) > 5


def test_a_fit_is_judged_against_its_stderr():
    image = data.portrait()[100:300, 100:300]
    output = kernelfit.synth.synthesize(image, kernels.gaussian(5, 1.0), dtype=np.uint8)
    fit = kernelfit.fit_kernel(image, output, 5)
    result = identify(fit)
    assert result.name == "gaussian" and result.matches
    assert result.parameters["sigma"] == pytest.approx(1.0, abs=0.01)
    # the noise of 8-bit rounding hides the tails: not a box, not a disk
    assert all(not c.matches for c in result.candidates if c.name in ("box", "disk"))


def test_identify_errors():
    with pytest.raises(ValueError, match=r"tolerance must be positive"):
        identify(kernels.box(3), tolerance=0.0)
    with pytest.raises(ValueError, match=r"convention must be one of"):
        identify(kernels.box(3), convention="flip")
    with pytest.raises(ValueError, match=r"identify names real kernels"):
        identify(kernels.scharr("x") + 1j * kernels.scharr("y"))
    image = np.random.default_rng(0).standard_normal((20, 20, 2))
    fit = kernelfit.fit_kernel(image, image, 3, channel_axis=-1, channels="separate")
    with pytest.raises(ValueError, match=r"identify takes one spatial kernel"):
        identify(fit)
