"""The command line: main([...]) in-process, exit codes, files in and out, one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

import kernelfit
from kernelfit import data, kernels, synth
from kernelfit._cli import main


@pytest.fixture
def pair(tmp_path):
    """A crop of the portrait and its 8-bit sharpened copy, as PNG files."""
    image = data.portrait()[150:310, 150:300]
    output = synth.synthesize(image, kernels.sharpen(), boundary="edge", dtype=np.uint8)
    paths = tmp_path / "before.png", tmp_path / "after.png"
    Image.fromarray(image).save(paths[0])
    Image.fromarray(output).save(paths[1])
    return str(paths[0]), str(paths[1])


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_fit_reports_the_kernel_quality_and_identifiability(pair, capsys):
    status, out, err = run(capsys, "fit", *pair, "--size", "3")
    assert status == 0 and err == ""
    for part in ("kernel K, 3x3, convolution orientation", "to re-apply it:",
                 "scipy.ndimage.convolve(image.astype(float), K, mode='nearest')",
                 "cv2.filter2D(image.astype(np.float64), -1, K[::-1, ::-1], "
                 "borderType=cv2.BORDER_REPLICATE)", "R^2", "PSNR", "dB",
                 "identifiable: yes (rank 9 of 9 unknowns", "masked or saturated"):
        assert part in out
    assert "5." in out and "-1." in out  # the sharpen kernel's coefficients


@pytest.mark.parametrize("name", ["k.npy", "k.txt", "k.csv", "k.json"])
def test_fit_writes_the_kernel(pair, capsys, tmp_path, name):
    path = tmp_path / name
    status, out, _ = run(capsys, "fit", *pair, "--size", "3", "-o", path)
    assert status == 0 and f"wrote {path}" in out
    if name.endswith(".json"):
        content = json.loads(path.read_text())
        kernel = np.array(content["kernel"])
        assert content["identifiable"] is True and content["convention"] == "convolution"
        assert content["rank"] == 9 and content["psnr_db"] > 40
        assert np.array(content["stderr"]).shape == (3, 3)
        loaded, convention = kernelfit._io.read_kernel(path)
        np.testing.assert_array_equal(loaded, kernel)
    else:
        kernel = kernelfit._io.read_kernel(path)[0]
    np.testing.assert_allclose(kernel, kernels.sharpen(), atol=0.01)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary files


def test_fit_plot_quiet_and_options(pair, capsys, tmp_path):
    figure = tmp_path / "fit.png"
    status, out, err = run(capsys, "fit", *pair, "--size", "3x3", "--boundary", "edge",
                           "--convention", "correlation", "--bias", "--plot", figure, "-q")
    assert status == 0 and out == "" and err == ""
    with Image.open(figure) as picture:
        assert picture.size[0] > 1000


def test_strict_exit_status_for_an_undetermined_kernel(tmp_path, capsys):
    image = data.checkerboard((24, 24), square=1) * 200
    for name, values in (("in.png", image), ("out.png", kernelfit.convolve(image,
                                                                           kernels.box(3)))):
        Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).save(tmp_path / name)
    args = ["fit", tmp_path / "in.png", tmp_path / "out.png", "--size", "3"]
    status, out, err = run(capsys, *args)
    assert status == 0 and "identifiable: NO" in out
    assert err.startswith("kernelfit: warning: the data determine only")
    assert run(capsys, *args, "--strict")[0] == 1


def test_colour_16bit_alpha_and_mask(tmp_path, capsys):
    colour = data.portrait(color=True)[200:280, 200:290]
    blurred = synth.synthesize(colour, kernels.gaussian(3, 0.8), channel_axis=-1,
                               dtype=np.uint8)
    rgba = np.dstack([colour, np.full(colour.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "in.png")
    Image.fromarray(blurred).save(tmp_path / "out.png")
    status, out, _ = run(capsys, "fit", tmp_path / "in.png", tmp_path / "out.png", "--size", "3",
                         "--color", "separate")
    assert status == 0 and "alpha channel dropped" in out and "channels=separate" in out
    status, out, _ = run(capsys, "fit", tmp_path / "in.png", tmp_path / "out.png", "--size", "3",
                         "--color", "gray")
    assert status == 0 and "grey" in out

    grey16 = (data.smooth_field((60, 60), rng=0) * 60000).astype(np.uint16)
    out16 = synth.synthesize(grey16, kernels.box(3), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "in16.png")
    Image.fromarray(out16).save(tmp_path / "out16.png")
    mask = np.ones((60, 60), np.uint8) * 255
    mask[:20] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    json_path = tmp_path / "k.json"
    status, out, _ = run(capsys, "fit", tmp_path / "in16.png", tmp_path / "out16.png",
                         "--size", "3", "--mask", tmp_path / "mask.png", "-o", json_path)
    assert status == 0 and "uint16" in out
    content = json.loads(json_path.read_text())
    # the edge rule is found (fill: synthesize's default), so the border counts too
    assert content["boundary"] == "fill" and content["n_masked"] == 20 * 60
    np.testing.assert_allclose(content["kernel"], kernels.box(3), atol=1e-3)


@pytest.mark.parametrize("args,message", [
    (["fit", "{missing}", "{after}", "--size", "3"], r"no such file"),
    (["fit", "{text}", "{after}", "--size", "3"], r"not an image file Pillow can read"),
    (["fit", "{before}", "{small}", "--size", "3"], r"does not match input spatial shape"),
    (["fit", "{before}", "{after}", "--size", "999"], r"size \(999, 999\) is larger than"),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{nodir}/k.npy"],
     r"directory .* does not exist"),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{before}"],
     r"refusing to overwrite an input file"),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{tmp}/k.png"],
     r"a kernel file must end in"),
    (["fit", "{before}", "{after}", "--size", "3", "--color", "full"],
     r"--color full needs a colour INPUT"),
    (["apply", "{before}", "blur:sigma=2", "-o", "{tmp}/x.png"],
     r"'blur' is not a kernel name \(one of box, disk"),
    (["apply", "{before}", "gaussian:width=2", "-o", "{tmp}/x.png"],
     r"gaussian takes size, sigma, ndim, truncate; got 'width'"),
    (["apply", "{before}", "missing.npy", "-o", "{tmp}/x.png"], r"missing.npy: no such file"),
    (["apply", "{before}", "box:size=3", "--float", "-o", "{tmp}/x.png"],
     r"an image file needs uint8 or uint16 data"),
    (["apply", "{before}", "box:size=3", "-o", "{tmp}"], r"is a directory"),
    (["animate", "--kernel", "box:size=9", "-o", "{tmp}/a.gif"],
     r"no larger than the image \(5, 5\)"),
])
def test_errors_are_one_line_with_status_2(pair, capsys, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not an image\n")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "small.png")
    names = dict(missing=tmp_path / "nope.png", before=pair[0], after=pair[1], text=text,
                 small=tmp_path / "small.png", nodir=tmp_path / "nodir", tmp=tmp_path)
    status, out, err = run(capsys, *[a.format(**names) for a in args])
    assert status == 2
    assert err.startswith("kernelfit: error: ") and err.count("\n") == 1, err
    import re
    assert re.search(message, err), err


def test_usage_errors_exit_2_on_one_line(capsys):
    for argv, message in ((["fit", "a.png"], "the following arguments are required"),
                          (["fit", "a.png", "b.png", "--size", "3y"], "expected K or KxL"),
                          (["fitt"], "invalid choice: 'fitt'")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("kernelfit") and "error: " in err and message in err
        assert err.count("\n") == 1 and "--help" in err
    assert main([]) == 2 and "commands" in capsys.readouterr().out


def test_version_and_help_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == (
        f"kernelfit {kernelfit.__version__}")
    for command in ("fit", "apply", "demo", "animate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"examples:\n  kernelfit {command}" in capsys.readouterr().out


@pytest.mark.parametrize("spec,expected", [
    ("gaussian:sigma=1.5,size=7", kernels.gaussian(7, 1.5)),
    ("sobel:axis=x", kernels.sobel("x")),
    ("motion_blur:length=5,angle=45", kernels.motion_blur(5, 45)),
    ("box:size=3x5", kernels.box((3, 5))),
    ("emboss", kernels.emboss()),
])
def test_apply_named_kernels_rounds_and_clips_like_synth(pair, capsys, tmp_path, spec, expected):
    out = tmp_path / "out.png"
    status, text, _ = run(capsys, "apply", pair[0], spec, "-o", out, "--boundary", "edge")
    assert status == 0 and f"wrote {out}" in text
    image = np.asarray(Image.open(pair[0]))
    result = np.asarray(Image.open(out))
    np.testing.assert_array_equal(
        result, synth.quantize(kernelfit.convolve(image, expected, boundary="edge"), np.uint8))


def test_apply_kernel_files_and_float_output(pair, capsys, tmp_path):
    kernel_json = tmp_path / "k.json"
    assert run(capsys, "fit", *pair, "--size", "3", "--convention", "correlation", "-o",
               kernel_json)[0] == 0
    result_path = tmp_path / "again.npy"
    assert run(capsys, "apply", pair[0], kernel_json, "--float", "-o", result_path)[0] == 0
    content = json.loads(kernel_json.read_text())
    image = np.asarray(Image.open(pair[0]))
    # The JSON file records its orientation and edge rule: applying it uses them.
    assert content["convention"] == "correlation" and content["boundary"] == "edge"
    np.testing.assert_allclose(np.load(result_path), kernelfit.correlate(
        image, np.array(content["kernel"]), boundary="edge"))
    np.savetxt(tmp_path / "k.csv", kernels.box(3), delimiter=",")
    assert run(capsys, "apply", pair[0], tmp_path / "k.csv", "-o", tmp_path / "b.png")[0] == 0
    colour = tmp_path / "colour.png"
    Image.fromarray(data.portrait(color=True)[:50, :60]).save(colour)
    assert run(capsys, "apply", colour, "box:size=3", "-o", tmp_path / "c.png")[0] == 0
    assert np.asarray(Image.open(tmp_path / "c.png")).shape == (50, 60, 3)


def test_demo(capsys, tmp_path):
    status, out, _ = run(capsys, "demo", "--kernel", "box", "--out", tmp_path)
    assert status == 0
    assert "true" in out and "recovered" in out and "error" in out
    assert "max |error|" in out and "identifiable: yes" in out
    assert (tmp_path / "demo.png").exists()


def test_animate_default_and_image(capsys, tmp_path):
    status, out, _ = run(capsys, "animate", "-o", tmp_path / "conv.gif")
    assert status == 0 and "9 frames" in out
    with Image.open(tmp_path / "conv.gif") as gif:
        assert gif.n_frames == 9
    status, out, _ = run(capsys, "animate", "--image", "portrait", "--width", "12",
                         "--stride", "5", "--kernel", "sobel:axis=y", "--convention",
                         "convolution", "-o", tmp_path / "p.gif")
    assert status == 0
    assert sorted(os.listdir(tmp_path)) == ["conv.gif", "p.gif"]  # no temporary files


def test_installed_console_script_and_module():
    script = subprocess.run(["kernelfit", "--version"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.startswith("kernelfit ")
    module = subprocess.run([sys.executable, "-m", "kernelfit", "fit", "x.png", "y.png",
                             "--size", "3"], capture_output=True, text=True)
    assert module.returncode == 2
    assert module.stderr == "kernelfit: error: x.png: no such file\n"


def test_fit_auto_reports_size_edge_rule_and_identification(tmp_path, capsys):
    image = data.portrait()[150:350, 150:350]
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(image).filter(ImageFilter.SHARPEN).save(tmp_path / "out.png")
    kernel_json = tmp_path / "k.json"
    status, out, err = run(capsys, "fit", tmp_path / "in.png", tmp_path / "out.png", "--size",
                           "auto", "--boundary", "auto", "-o", kernel_json)
    assert status == 0, err
    for part in ("size found: 3x3, origin (0, 0)", "edge rule found: the border was left "
                 "unchanged", "identified: sharpen", "rational form: [[-1, -1, -1], "
                 "[-1, 16, -1], [-1, -1, -1]] / 8"):
        assert part in out
    content = json.loads(kernel_json.read_text())
    assert content["rational"] == "[[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]] / 8"
    status, out, _ = run(capsys, "identify", kernel_json)
    assert status == 0 and out.startswith("sharpen: identity - 0.125 x 8-neighbour")


def test_identify_plain_files_and_exit_status(tmp_path, capsys):
    np.savetxt(tmp_path / "sobel.txt", kernels.sobel("x"))
    status, out, _ = run(capsys, "identify", tmp_path / "sobel.txt")
    assert status == 0 and out.startswith("Sobel d/dx") and "separable" in out
    np.save(tmp_path / "random.npy", kernels.random((3, 3), rng=0))
    status, out, _ = run(capsys, "identify", tmp_path / "random.npy")
    assert status == 1 and out.startswith("closest: ")
    status, _, err = run(capsys, "identify", tmp_path / "missing.npy")
    assert status == 2 and "no such file" in err


def test_fit_origin_auto_finds_a_shifted_anchor(tmp_path, capsys):
    """A filter anchored off-centre: the warning names --origin, and --origin auto finds it."""
    image = data.portrait()[150:310, 150:300]
    output = synth.synthesize(image, kernels.gaussian(5, 1.0), boundary="edge", origin=(2, 1),
                              dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(output).save(tmp_path / "out.png")
    status, _, err = run(capsys, "fit", tmp_path / "in.png", tmp_path / "out.png", "--size",
                         "5", "--boundary", "edge")
    assert status == 0 and "warning: the kernel is misplaced: at origin (2, 1)" in err
    status, out, err = run(capsys, "fit", tmp_path / "in.png", tmp_path / "out.png", "--size",
                           "5", "--boundary", "edge", "--origin", "auto")
    assert status == 0, err
    assert "origin=(2, 1)" in out and "size found: 5x5, origin (2, 1)" in out
    assert main(["apply", "k.json", "in.png", "-o", "x.png", "--origin", "auto"]) == 2
    assert "expected K or KxL, got 'auto'" in capsys.readouterr().err
