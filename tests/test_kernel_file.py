"""The kernel file: `kernelfit fit -o k.json` then `kernelfit apply k.json` reproduces the
fitted output (8-bit: within one grey level) for every edge rule, bias, origin and channel
layout, and a kernel file is read back exactly or refused with one line naming the field."""

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

import kernelfit
from kernelfit import data, synth
from kernelfit._cli import main
from kernelfit._io import FileError, fit_from_dict, fit_to_dict, read_fit

KERNEL = np.array([[1.0, 2.0, 0.0], [3.0, 6.0, -1.0], [0.0, 2.0, 3.0]]) / 16


def _round_trip(tmp_path, image, output, *options):
    paths = [tmp_path / name for name in ("in.png", "out.png", "k.json", "again.png")]
    Image.fromarray(image).save(paths[0])
    Image.fromarray(output).save(paths[1])
    assert main(["fit", str(paths[0]), str(paths[1]), "-o", str(paths[2]), "-q",
                 *map(str, options)]) == 0
    assert main(["apply", str(paths[0]), str(paths[2]), "-o", str(paths[3]), "-q"]) == 0
    again = np.asarray(Image.open(paths[3]))
    assert again.shape == output.shape and again.dtype == output.dtype
    return np.abs(again.astype(int) - output.astype(int)).max(), \
        json.loads(paths[2].read_text())


@pytest.mark.parametrize("boundary", ["fill", "edge", "wrap", "symmetric", "reflect"])
@pytest.mark.parametrize("offset", [0.0, 37.0])
@pytest.mark.parametrize("origin", [0, (1, -1)])
def test_fit_then_apply_reproduces_every_edge_rule_bias_and_origin(tmp_path, boundary, offset,
                                                                   origin):
    image = data.portrait()[100:148, 120:180]
    output = synth.synthesize(image, KERNEL, boundary=boundary, offset=offset, origin=origin,
                              dtype=np.uint8)
    options = ["--size", "3"] + (["--bias"] if offset else []) + (
        ["--origin", "auto"] if origin else [])
    error, content = _round_trip(tmp_path, image, output, *options)
    assert error <= 1
    assert content["boundary"] is not None and (content["bias"] is not None) == bool(offset)
    assert tuple(content["origin"]) == ((0, 0) if origin == 0 else origin)
    assert content["format"] == "kernelfit-kernel" and content["kernelfit_version"] == \
        kernelfit.__version__ and content["output_dtype"] == "uint8"


@pytest.mark.parametrize("color", ["shared", "separate", "full"])
def test_fit_then_apply_reproduces_every_channel_layout(tmp_path, color):
    image = data.portrait(color=True)[100:140, 120:170]
    rng = np.random.default_rng(3)
    if color == "shared":
        kernel, channels = KERNEL, "shared"
    elif color == "separate":
        kernel, channels = rng.random((3, 3, 3)) / 9, "separate"
    else:
        kernel, channels = rng.random((3, 3, 3, 3)) / 27, "full"
    predicted = kernelfit.convolve(image, kernel, boundary="reflect", channel_axis=-1,
                                   channels=channels) + np.array([5.0, 10.0, 20.0])
    output = synth.quantize(predicted, np.uint8)
    error, content = _round_trip(tmp_path, image, output, "--size", "3", "--bias",
                                 "--color", color)
    assert error <= 1 and content["channels"] == color and len(content["bias"]) == 3


def test_a_frame_left_unchanged_is_recorded_and_reapplied(tmp_path):
    """Pillow's Kernel filters leave a frame as it was: the fit records it, apply copies it."""
    image = data.portrait()[100:148, 120:180]
    weights = (KERNEL * 16).ravel().tolist()
    output = np.asarray(Image.fromarray(image).filter(ImageFilter.Kernel((3, 3), weights,
                                                                         scale=16)))
    error, content = _round_trip(tmp_path, image, output, "--size", "3")
    assert error <= 1 and content["boundary"] is None
    assert content["frame"] == [[1, 1], [1, 1]]


def test_a_fit_without_an_edge_rule_applies_fill_and_says_so(tmp_path, capsys):
    image = data.portrait()[100:148, 120:180]
    output = synth.synthesize(image, KERNEL, boundary="edge", dtype=np.uint8)
    paths = [tmp_path / name for name in ("in.png", "out.png", "k.json", "again.png")]
    Image.fromarray(image).save(paths[0])
    Image.fromarray(output).save(paths[1])
    assert main(["fit", *map(str, paths[:2]), "--size", "3", "--boundary", "none", "-o",
                 str(paths[2]), "-q"]) == 0
    assert json.loads(paths[2].read_text())["boundary"] is None
    assert main(["apply", str(paths[0]), str(paths[2]), "-o", str(paths[3])]) == 0
    assert "records no edge rule" in capsys.readouterr().out
    # an explicit rule overrides the file's
    assert main(["apply", str(paths[0]), str(paths[2]), "-o", str(paths[3]), "-q",
                 "--boundary", "edge"]) == 0
    assert np.abs(np.asarray(Image.open(paths[3])).astype(int) - output).max() <= 1


@pytest.mark.parametrize("complex_", [False, True])
def test_the_kernel_file_reads_back_the_fit_exactly(complex_):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 32)) + (1j * rng.standard_normal((30, 32)) if complex_ else 0)
    kernel = rng.standard_normal((3, 2))
    y = kernelfit.convolve(x, kernel, boundary="wrap") + 0.5
    fit = kernelfit.fit_kernel(x, y, (3, 2), boundary="auto", bias=True)
    back = fit_from_dict(json.loads(json.dumps(fit_to_dict(fit))))
    for name in ("size", "mode", "boundary", "convention", "origin", "channels",
                 "channel_axis", "fillvalue", "frame", "rank", "n_unknowns"):
        assert getattr(back, name) == getattr(fit, name), name
    np.testing.assert_array_equal(back.kernel, fit.kernel)
    assert back.bias == fit.bias
    np.testing.assert_array_equal(back.predict(x), fit.predict(x))


@pytest.mark.parametrize("content, message", [
    ([1, 2], "expected a JSON object"),
    ({}, "no 'kernel' field"),
    ({"kernel": []}, "'kernel' is empty"),
    ({"kernel": [[1, 2], [3]]}, "not a rectangular array"),
    ({"kernel": [[1, "a"]]}, "must hold numbers"),
    ({"kernel": [1e400]}, "must be finite"),
    ({"kernel": [1, 2], "kernel_imag": [1]}, "'kernel_imag' has shape"),
    ({"kernel": [1, 2], "mode": "middle"}, "'mode' must be one of"),
    ({"kernel": [1, 2], "boundary": "mirror"}, "'boundary' must be one of"),
    ({"kernel": [1, 2], "convention": "flipped"}, "'convention' must be one of"),
    ({"kernel": [1, 2], "origin": [0, 0]}, "'origin' [0, 0] needs 1 values"),
    ({"kernel": [1, 2], "origin": "0"}, "'origin' must be a list of integers"),
    ({"kernel": [1, 2], "size": [3]}, "'size' [3] does not match"),
    ({"kernel": [1, 2], "channels": "shared"}, "'channels' and 'channel_axis' go together"),
    ({"kernel": [1, 2], "bias": "x"}, "'bias' must be a number"),
    ({"kernel": [1, 2], "frame": [[1]]}, "'frame' needs 1 pairs"),
    ({"kernel": [1, 2], "fillvalue": None}, "'fillvalue' must be a number"),
    ({"kernel": [1, 2], "stderr": [1]}, "'stderr' has shape"),
    ({"kernel": [1, 2], "format": "other"}, "format 'other' is not"),
    ({"kernel": [1, 2], "format_version": 99}, "upgrade kernelfit"),
])
def test_a_bad_kernel_file_is_refused_naming_the_field(tmp_path, content, message):
    path = tmp_path / "k.json"
    path.write_text(json.dumps(content).replace("1e+400", "1e400"))
    with pytest.raises(FileError, match=r"k\.json: not a usable kernelfit kernel file: .*"
                       + message.replace("[", r"\[").replace("]", r"\]")):
        read_fit(path)


def test_a_deeply_nested_or_broken_kernel_file_is_one_line(tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(data.portrait()[:20, :20]).save(image)
    for text in ("[" * 100000 + "]" * 100000, "{\"kernel\": [1, 2", "\x00\x01"):
        path = tmp_path / "k.json"
        path.write_text(text)
        assert main(["apply", str(image), str(path), "-o", str(tmp_path / "o.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("kernelfit: error: ") and len(err.strip().splitlines()) == 1


def _evaluate(expression, image, fit):
    """Run a recipe's expression (its text before two spaces: the rest is a comment)."""
    import cv2
    import scipy.ndimage
    from PIL import ImageFilter

    code = expression.split("  ")[0]
    namespace = dict(image=image, K=np.asarray(fit.kernel), bias=fit.bias, np=np,
                     scipy=scipy, cv2=cv2, Image=Image, ImageFilter=ImageFilter,
                     kernelfit=kernelfit, fit=fit)
    return np.asarray(eval(code, namespace), dtype=float)


@pytest.mark.parametrize("boundary", ["fill", "edge", "wrap", "symmetric", "reflect", "pillow"])
@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("bias", [False, True])
def test_every_printed_recipe_reproduces_the_fit(boundary, convention, bias):
    """The 'how to use it' lines of `kernelfit fit`: each expression gives the fitted output
    (OpenCV's and scipy's with the edge rule found; Pillow's where its frame was found)."""
    from kernelfit._cli import recipes

    image = data.portrait()[100:140, 120:170]
    offset = 12.0 if bias else 0.0
    if boundary == "pillow":
        weights = (KERNEL * 16).ravel().tolist()
        output = np.asarray(Image.fromarray(image).filter(ImageFilter.Kernel(
            (3, 3), weights, scale=16, offset=offset))).astype(float)
    else:
        output = kernelfit.convolve(image, KERNEL, boundary=boundary) + offset
    fit = kernelfit.fit_kernel(image, output, 3, boundary="auto", bias=bias,
                               convention=convention)
    found = recipes(fit)
    libraries = {library for library, _ in found}
    expected = {"fill": {"scipy", "OpenCV"}, "edge": {"scipy", "OpenCV"}, "wrap": {"scipy"},
                "symmetric": {"scipy", "OpenCV"}, "reflect": {"scipy", "OpenCV"},
                "pillow": {"Pillow"}}[boundary]
    assert libraries == {"kernelfit"} | expected
    for library, expression in found:
        if expression.startswith("fit.predict"):
            expression = "fit.predict(image)"
        result = _evaluate(expression, image, fit)
        # Pillow's output is rounded to 8 bits: the fit (and Pillow's own rounding of the
        # fitted weights) reproduce it to the data's precision, one level
        tolerance = 1 if boundary == "pillow" else 1e-6
        assert np.abs(result - output).max() <= tolerance, (library, expression)


def test_recipes_of_a_shifted_or_colour_fit_stay_with_kernelfit():
    from kernelfit._cli import recipes

    image = data.portrait(color=True)[100:140, 120:170]
    output = kernelfit.convolve(image, KERNEL, boundary="edge", channel_axis=-1,
                                origin=(1, 0))
    fit = kernelfit.fit_kernel(image, output, 3, boundary="auto", channel_axis=-1,
                               origin=(1, 0))
    found = recipes(fit)
    assert {library for library, _ in found} == {"kernelfit"}
    result = _evaluate(found[-1][1], image, fit)
    np.testing.assert_allclose(result, output, atol=1e-6)


def test_apply_checks_the_image_against_the_kernel_files_channels(tmp_path, capsys):
    grey = data.portrait()[100:140, 120:170]
    colour = data.portrait(color=True)[100:140, 120:170]
    for name, image in (("grey", grey), ("colour", colour)):
        Image.fromarray(image).save(tmp_path / f"{name}.png")
        output = synth.synthesize(image, KERNEL, boundary="edge", offset=3.0, dtype=np.uint8,
                                  channel_axis=-1 if image.ndim == 3 else None)
        Image.fromarray(output).save(tmp_path / f"{name}-out.png")
        assert main(["fit", str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}-out.png"),
                     "--size", "3", "--bias", "-q", "-o", str(tmp_path / f"{name}.json")]) == 0
    # a grey fit applies to every channel alike (one bias); a colour fit needs channels
    assert main(["apply", str(tmp_path / "colour.png"), str(tmp_path / "grey.json"), "-q",
                 "-o", str(tmp_path / "a.png")]) == 0
    expected = synth.synthesize(colour, KERNEL, boundary="edge", offset=3.0, dtype=np.uint8,
                                channel_axis=-1)
    assert np.abs(np.asarray(Image.open(tmp_path / "a.png")).astype(int) - expected).max() <= 1
    assert main(["apply", str(tmp_path / "grey.png"), str(tmp_path / "colour.json"),
                 "-o", str(tmp_path / "b.png")]) == 2
    assert "was fitted to images with channels" in capsys.readouterr().err
