"""size='auto' on small images and with a max_size near or beyond the image: the search covers
only supports the data can judge, says when the data cut it short, and refuses geometries
whose shapes say nothing about the size."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

import kernelfit
from kernelfit import data, fit_kernel, kernels, synth
from kernelfit._cli import main
from kernelfit._prepare import prepare
from kernelfit._search import plan

PHOTO = data.portrait()[150:350, 150:350]
SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13  # Pillow's ImageFilter.SMOOTH


def _smooth(image):
    """Pillow's SMOOTH, which leaves a 1-sample frame as it was (boundary='auto' finds it)."""
    return np.asarray(Image.fromarray(image).filter(ImageFilter.SMOOTH))


def test_smooth_with_max_size_near_the_image_is_3x3():
    """A 199x199 search on 200x200 had 4 samples left inside the image and chose 2x2 (an
    "identity, scale 0.47", R^2 0.994). The data allow 47x47."""
    fit = fit_kernel(PHOTO, _smooth(PHOTO), "auto", boundary="auto", max_size=199)
    assert fit.size == (3, 3) and fit.origin == (0, 0)
    np.testing.assert_allclose(fit.kernel, SMOOTH, atol=2e-3)
    assert fit.size_limit == (47, 47)
    assert "the data allow a search up to 47x47 only" in str(fit)


@pytest.mark.parametrize("max_size, extent", [(15, (15, 15)), (47, (47, 47)),
                                              (49, (47, 47)), (199, (47, 47)),
                                              (2000, (47, 47))])
def test_max_size_beyond_the_image_searches_what_the_data_allow(max_size, extent):
    """max_size=2000 was clipped to the image (199x199, the same 2x2 answer); it is now the
    same 47x47 search as 199 (the fit above), and 15 is searched as asked."""
    output = synth.synthesize(PHOTO, kernels.box(3), dtype=np.uint8)
    problem = prepare(PHOTO, output, "auto", mode=None, boundary=None, fillvalue=0,
                      convention="convolution", origin=0, bias=False, channel_axis=None,
                      channels="shared", mask=None, saturated="auto", method="lstsq",
                      options=None, max_size=max_size, checks=True)
    assert plan(problem)[0].shape == extent


@pytest.mark.parametrize("max_size", [15, 19, 2000])
@pytest.mark.parametrize("filtered", ["smooth", "box"])
def test_a_20x20_crop_finds_3x3(filtered, max_size):
    """A 15x15 search of a 20x20 crop left 36 samples for 225 unknowns and chose 7x7 (any
    support of 36 taps or more fits them exactly); 19x19 left 4 and chose 2x2."""
    crop = PHOTO[50:70, 60:80]
    if filtered == "smooth":
        output, options, expected = _smooth(crop), dict(boundary="auto"), SMOOTH
    else:
        output = synth.synthesize(crop, kernels.box(3), dtype=np.uint8)
        options, expected = {}, kernels.box(3)
    fit = fit_kernel(crop, output, "auto", max_size=max_size, **options)
    assert fit.size == (3, 3) and fit.origin == (0, 0)
    np.testing.assert_allclose(fit.kernel, expected, atol=0.02)
    assert fit.size_limit == (5, 5)  # 256 samples inside, 25 unknowns


def test_a_kernel_that_reaches_a_search_cut_short_warns():
    """Too small a crop for more than a 3x3 search: a 3x3 found there may be larger."""
    crop = PHOTO[50:64, 60:74]
    output = synth.synthesize(crop, kernels.box(3), dtype=np.uint8)
    with pytest.warns(kernelfit.ModelWarning, match=r"the kernel found, 3x3, reaches the edge "
                      r"of the largest support the data allow size='auto' to search, 3x3 "
                      r"\(max_size=15\): a larger one would leave fewer than 10 output "
                      r"samples per unknown"):
        fit = fit_kernel(crop, output, "auto")
    assert fit.size == (3, 3) and fit.size_limit == (3, 3)


@pytest.mark.parametrize("shape, options, limit", [
    ((1000,), {}, None),                    # 986 samples for 15 taps: max_size as asked
    ((110,), {}, (9,)),                     # 102 samples inside for 9 taps (100 for 11)
    ((110,), dict(boundary="fill"), (11,)),  # every sample: 110 for 11 taps
    ((40, 40), {}, (9, 9)),                 # 32^2 = 1024 samples inside for 81 unknowns
    ((10, 200), {}, (5, 15)),               # at most half the data along an axis
    ((40, 40, 3), dict(channel_axis=-1), (13, 13)),  # 3 samples per pixel for 169 taps
    ((40, 40, 3), dict(channel_axis=-1, channels="full"), (5, 5)),  # 3x the taps
])
def test_the_search_leaves_ten_samples_per_unknown(shape, options, limit):
    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape)
    spatial = len(shape) - ("channel_axis" in options)
    kernel = kernels.box((3,) * spatial)
    if options.get("channels") == "full":
        kernel = kernel[..., np.newaxis, np.newaxis] * np.eye(3)
    output = kernelfit.convolve(image, kernel, **options)
    fit = fit_kernel(image, output, "auto", **options)
    assert fit.size == (3,) * spatial and fit.size_limit == limit


def test_several_pairs_add_their_samples():
    """Ten 20x20 pairs: ten times the samples of one, and the search reaches 9x9, half the
    data, instead of 5x5."""
    rng = np.random.default_rng(1)
    images = [rng.standard_normal((20, 20)) for _ in range(10)]
    outputs = [kernelfit.convolve(image, kernels.box(3)) for image in images]
    fit = fit_kernel(images, outputs, "auto")
    assert fit.size == (3, 3) and fit.size_limit == (9, 9)


@pytest.mark.parametrize("mode, than", [("full", "larger"), ("valid", "smaller")])
def test_size_auto_with_full_or_valid_on_equal_shapes_is_refused(mode, than):
    """Equal shapes imply a 1x1 kernel in 'full' and 'valid' modes: it came back with R^2 0.15
    and no warning. They are 'same' geometry; the error says so."""
    output = synth.synthesize(PHOTO, kernels.box(3), dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"mode='{mode}' with size='auto' takes the kernel's "
                       rf"size from how much {than} the output is than the input, but output "
                       rf"spatial shape \(200, 200\) equals the input's: that is 'same' "
                       rf"geometry. Pass mode='same' \(or no mode\)"):
        fit_kernel(PHOTO, output, "auto", mode=mode)
    with pytest.raises(ValueError, match=r"output\[1\] spatial shape \(200, 200\) equals the "
                       r"input\[1\]'s"):
        fit_kernel([PHOTO[:-2, :-2], PHOTO], [PHOTO[:-4, :-4] if mode == "valid" else PHOTO,
                                              output], "auto", mode=mode)
    assert fit_kernel(PHOTO, PHOTO, 1, mode=mode).size == (1, 1)  # asked for: still allowed


def test_size_auto_with_full_on_equal_shapes_in_the_command_line(tmp_path, capsys):
    Image.fromarray(PHOTO).save(tmp_path / "in.png")
    Image.fromarray(_smooth(PHOTO)).save(tmp_path / "out.png")
    assert main(["fit", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--size", "auto",
                 "--mode", "full"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelfit: error: --mode full with --size auto takes the kernel's "
                          "size") and "Pass --mode same (or no mode)" in err
    assert err.count("\n") == 1
