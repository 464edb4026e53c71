"""Each warning tests its cause: a structured residual (a non-linear filter, JPEG) is not
blamed on shift-variance, a blur that changes down the image is, and noise is not warned
about at all, whatever its level."""

import io
import warnings

import cv2
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

import kernelfit
from kernelfit import data, kernels, synth

IMAGE = data.portrait()[100:292, 100:292]


def _jpeg(array, quality):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def _warnings_of(output, size):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernelfit.fit_kernel(IMAGE, output, size, boundary="auto")
    return [str(w.message) for w in caught]


NOT_NOISE = r"is not noise: .* No kernel reproduces this output: a non-linear filter"


@pytest.mark.parametrize("name, output", [
    ("median", scipy.ndimage.median_filter(IMAGE, 3)),
    ("bilateral", cv2.bilateralFilter(IMAGE, 5, 30, 5)),
    ("jpeg", _jpeg(synth.synthesize(IMAGE, kernels.box(3), boundary="edge", dtype=np.uint8),
                   90)),
])
@pytest.mark.parametrize("size", [3, "auto"])
def test_a_structured_residual_is_reported_as_such_not_as_shift_variance(name, output, size):
    """(The input, a JPEG photograph, leaves its block grid in the residual of a median:
    only an output written as JPEG is named as such.)"""
    found = _warnings_of(output, size)
    assert len(found) == 1, found
    import re
    if name == "jpeg":
        assert "the output was compressed after the filter (JPEG)" in found[0]
    else:
        assert re.search(NOT_NOISE, found[0]) and "times what rounding to integers" in found[0]
    assert "shift-invariant" not in found[0]


@pytest.mark.parametrize("dtype", [np.uint8, None])
@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_noise_of_any_level_is_not_warned_about(dtype, noise):
    output = synth.synthesize(IMAGE, kernels.box(3), boundary="edge", noise=noise, rng=1,
                              dtype=dtype)
    assert _warnings_of(output, 3) == []


def test_a_blur_that_changes_down_the_image_is_shift_variance():
    rows = np.arange(IMAGE.shape[0])[:, np.newaxis]
    weight = np.clip((rows - 48) / 96, 0, 1)
    sharp = synth.synthesize(IMAGE, kernels.gaussian(5, 0.6), boundary="edge")
    soft = synth.synthesize(IMAGE, kernels.gaussian(5, 1.6), boundary="edge")
    output = np.round((1 - weight) * sharp + weight * soft).astype(np.uint8)
    found = _warnings_of(output, 5)
    assert len(found) == 1 and "the filter is not shift-invariant" in found[0], found
    assert "explain" in found[0] and "of the residual between them" in found[0]


def test_a_regularised_fit_is_not_called_non_linear():
    output = synth.synthesize(IMAGE, kernels.box(3), boundary="edge", noise=1.0, rng=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernelfit.fit_kernel(IMAGE, output, 3, method="ridge", options={"reg": 1e5})


def test_a_signal_median_is_not_noise_and_a_noisy_fir_is():
    """1-D: the structure is read along one stretch of the signal, neighbours adjacent."""
    rng = np.random.default_rng(0)
    signal = np.cumsum(rng.standard_normal(300_000))
    with pytest.warns(kernelfit.ModelWarning, match=r"is not noise: its size follows the "
                                                    r"output's local contrast"):
        kernelfit.fit_kernel(signal, scipy.ndimage.median_filter(signal, 5), 5)
    noisy = np.convolve(signal, [0.2] * 5, mode="same") + rng.standard_normal(signal.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernelfit.fit_kernel(signal, noisy, 5)


def test_an_offset_soaked_up_by_a_larger_kernel_names_bias():
    """scipy.ndimage's uniform_filter on uint8 rounds down between its passes (about -0.8
    in all): size='auto' without a bias grows the kernel to stand in for it."""
    output = scipy.ndimage.uniform_filter(IMAGE, 5)
    with pytest.warns(kernelfit.ModelWarning, match=r"a 5x5 kernel with an offset of -0\.\d+ "
                                                    r"explains the output better than the "
                                                    r"\d+x\d+ kernel found.* bias=True"):
        kernelfit.fit_kernel(IMAGE, output, "auto", boundary="auto")
    fit = kernelfit.fit_kernel(IMAGE, output, "auto", boundary="auto", bias=True)
    assert fit.size == (5, 5) and -1 < fit.bias < -0.5


def test_the_cli_says_bias_for_it(tmp_path, capsys):
    from kernelfit._cli import main

    Image.fromarray(IMAGE).save(tmp_path / "in.png")
    Image.fromarray(scipy.ndimage.uniform_filter(IMAGE, 5)).save(tmp_path / "out.png")
    assert main(["fit", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--size", "auto",
                 "-q"]) == 0
    assert "Fit it with --bias." in capsys.readouterr().err
