"""Hostile inputs to the command line, as a table: what is asked, and what must happen.

Every row ends in one line on stderr (``kernelfit: error: ...``, status 2) or in the documented
status, before any work when the problem is an output path, with no traceback and no file
written, replaced or left behind.
"""

import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kernelfit
from kernelfit import data, kernels, synth
from kernelfit._cli import main


@pytest.fixture
def files(tmp_path):
    """A small pair of 8-bit images, and the names the table uses."""
    image = data.portrait()[100:140, 120:170]
    Image.fromarray(image).save(tmp_path / "in.png")
    Image.fromarray(synth.synthesize(image, kernels.box(3), dtype=np.uint8)).save(
        tmp_path / "out.png")
    os.mkfifo(tmp_path / "fifo.json")
    return dict(tmp=tmp_path, before=tmp_path / "in.png", after=tmp_path / "out.png",
                missing=tmp_path / "missing.png", fifo=tmp_path / "fifo.json")


# (argv, expected status, message on stderr (regex), output paths that must not exist after)
TABLE = [
    # output paths, refused before any work (the input need not even exist)
    (["fit", "{missing}", "{after}", "--size", "3", "-o", "{tmp}/nodir/k.json"], 2,
     r"directory .*nodir does not exist", []),
    (["fit", "{missing}", "{after}", "--size", "3", "-o", "{tmp}/k.xyz"], 2,
     r"a kernel file must end in \.npy, \.txt, \.csv, \.json", ["k.xyz"]),
    (["fit", "{missing}", "{after}", "--size", "3", "--plot", "{tmp}/f.jpg"], 2,
     r"a figure \(PNG\) file must end in \.png", ["f.jpg"]),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{tmp}/k.png", "--plot",
      "{tmp}/k.png"], 2, r"a kernel file must end in", ["k.png"]),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{tmp}/same.json", "--plot",
      "{tmp}/same.json"], 2, r"a figure \(PNG\) file must end in", ["same.json"]),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{fifo}"], 2,
     r"is not a regular file", []),
    (["fit", "{before}", "{after}", "--size", "3", "-o", "{after}"], 2,
     r"refusing to overwrite an input file", []),
    (["apply", "{missing}", "box:size=3", "-o", "{tmp}/x.xyz"], 2,
     r"an output file must end in .*\.png.*\.npy", ["x.xyz"]),
    (["apply", "{before}", "box:size=3", "-o", "{fifo}"], 2, r"is not a regular file", []),
    (["animate", "-o", "{tmp}/a.png"], 2, r"an animation file must end in \.gif", ["a.png"]),
    (["demo", "--out", "{before}"], 2, r"is a file, not a directory", []),
    # usage
    (["fit", "{before}"], 2, r"the following arguments are required", []),
    (["fit", "{before}", "{after}", "--size", "0"], 2, r"size", []),
    (["fitt"], 2, r"invalid choice", []),
    (["apply", "{before}", "box:size=100000", "-o", "{tmp}/big.png"], 2, r"out of memory",
     ["big.png"]),
    # long runs: refused with the numbers, before any work
    (["animate", "--image", "portrait", "--width", "100000", "-o", "{tmp}/a.gif"], 2,
     r"--width must be from 3 to 400; got 100000", ["a.gif"]),
    (["animate", "--image", "portrait", "--width", "400", "--stride", "1", "-o",
      "{tmp}/a.gif"], 2, r"frames .* at most 2000: use a smaller --width or a larger --stride",
     ["a.gif"]),
]


@pytest.mark.parametrize("argv, status, message, absent", TABLE)
def test_hostile_command_lines(files, capsys, argv, status, message, absent):
    import re

    assert main([a.format(**files) for a in argv]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("kernelfit") and "error: " in err and re.search(message, err), err
    for name in absent:
        assert not (files["tmp"] / name).exists()
    assert stat.S_ISFIFO(os.stat(files["fifo"]).st_mode)  # never replaced
    assert not [p for p in os.listdir(files["tmp"]) if p.startswith(".")]  # no temporaries


def test_demo_creates_its_output_directory(tmp_path, capsys):
    folder = tmp_path / "new" / "dir"
    assert main(["demo", "--kernel", "box", "--out", str(folder), "-q"]) == 0
    assert (folder / "demo.png").is_file()


@pytest.mark.parametrize("raised, status, message", [
    (RuntimeError("boom"), 2, r"kernelfit: error: internal error \(RuntimeError: boom\); "
                              r"run again with --debug"),
    (MemoryError(), 2, r"kernelfit: error: out of memory"),
    (KeyboardInterrupt(), 130, r"kernelfit: interrupted"),
])
def test_unexpected_exceptions_are_one_line(files, capsys, monkeypatch, raised, status,
                                            message):
    import re

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(kernelfit, "fit_kernel", fail)
    assert main(["fit", str(files["before"]), str(files["after"]), "--size", "3"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(message, err), err
    if isinstance(raised, RuntimeError):  # --debug shows it
        with pytest.raises(RuntimeError, match="boom"):
            main(["fit", str(files["before"]), str(files["after"]), "--size", "3", "--debug"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_write_leaves_no_temporary_file(files, capsys, monkeypatch, signum):
    saved = np.save

    def save_then_signal(path, array, *args, **kwargs):
        saved(path, array, *args, **kwargs)
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(np, "save", save_then_signal)
    target = files["tmp"] / "result.npy"
    assert main(["apply", str(files["before"]), "box:size=3", "--float", "-o",
                 str(target)]) == 128 + signum
    assert capsys.readouterr().err == f"kernelfit: terminated by signal {signum}\n"
    assert not target.exists()
    assert not [p for p in os.listdir(files["tmp"]) if p.startswith(".")]
    assert signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler,
                                        signal.SIG_IGN) or callable(signal.getsignal(signum))


def test_a_closed_pipe_ends_quietly():
    """``kernelfit demo | head -1``: no 'Broken pipe', no traceback, status 141."""
    process = subprocess.Popen([sys.executable, "-m", "kernelfit", "demo", "--kernel", "box"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # gone before the demo writes its first line
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 141 and err == "", err


def test_cli_warnings_name_the_cli_flags(tmp_path, capsys):
    """The library's advice (bias=True, origin=(2, 1), size='auto') in the command line's
    words (--bias, --origin 2x1, --size auto)."""
    image = data.portrait()[100:160, 120:180]
    Image.fromarray(image).save(tmp_path / "in.png")
    cases = [(synth.synthesize(image, kernels.box(3), offset=60.0, dtype=np.uint8), ["3"],
              "--bias"),
             (synth.synthesize(image, kernels.box(3), origin=(1, 0), dtype=np.uint8), ["3"],
              "--origin 1x0, or --origin auto"),
             (synth.synthesize(image, kernels.gaussian(7, 1.5), dtype=np.uint8), ["3"],
              "--size auto")]
    for output, size, advice in cases:
        Image.fromarray(output).save(tmp_path / "out.png")
        assert main(["fit", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--size",
                     *size, "-q"]) == 0
        err = capsys.readouterr().err
        assert advice in err, err
        assert "=True" not in err and "='" not in err and "origin=(" not in err, err


def test_cli_errors_name_the_cli_flags():
    from kernelfit._cli import _cli_words

    assert _cli_words("masked out or saturated (see mask= and saturated=)") == \
        "masked out or saturated (see --mask)"
    assert _cli_words("use channels='full'") == "use --color full"
    assert _cli_words("max_size must be a positive integer") == \
        "--max-size must be a positive integer"


# --- the library -----------------------------------------------------------------------------

def test_a_masked_output_leaves_its_masked_samples_out():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 40))
    y = kernelfit.convolve(x, kernels.box(3))
    junk = y.copy()
    junk[5:10, 5:10] = 1e6
    masked = np.ma.masked_array(junk, mask=np.zeros(y.shape, bool))
    masked[5:10, 5:10] = np.ma.masked
    fit = kernelfit.fit_kernel(x, masked, 3)
    np.testing.assert_allclose(fit.kernel, kernels.box(3), atol=1e-10)
    assert fit.n_masked == 25
    also = np.ones(y.shape, bool)
    also[20:22] = False  # with mask=: both are left out
    assert kernelfit.fit_kernel(x, masked, 3, mask=also).n_masked == 25 + 2 * 38
    colour = np.ma.masked_array(np.stack([y, junk, y], -1), mask=False)
    colour[5:10, 5:10, 1] = np.ma.masked
    fit = kernelfit.fit_kernel(np.stack([x] * 3, -1), colour, 3, channel_axis=-1,
                               channels="separate", mask=also)
    assert fit.n_masked == 3 * 2 * 38 + 25


def test_a_masked_input_is_refused_saying_what_works():
    x = np.ma.masked_array(np.random.default_rng(0).standard_normal((20, 20)), mask=False)
    y = kernelfit.convolve(x.data, kernels.box(3))
    kernelfit.fit_kernel(x, y, 3)  # nothing masked: fine
    x[3, 3] = np.ma.masked
    with pytest.raises(ValueError, match=r"input is a masked array with masked samples.*"
                                         r"input\.filled\(value\)"):
        kernelfit.fit_kernel(x, y, 3)


@pytest.mark.parametrize("channels", ["separate", "full"])
def test_channels_without_a_channel_axis_is_refused(channels):
    x = np.ones((10, 10, 3))
    with pytest.raises(ValueError, match=rf"channels='{channels}' needs channel_axis"):
        kernelfit.fit_kernel(x, x, 3, channels=channels)


def test_a_kernel_the_data_do_not_determine_is_reported_whatever_the_rank():
    """A very smooth input: full rank, condition number ~1e9, standard errors as large as
    the coefficients, which are off by as much: the fit must say so."""
    import scipy.ndimage

    rng = np.random.default_rng(0)
    image = scipy.ndimage.gaussian_filter(rng.standard_normal((100, 100)), 8) * 2000
    output = kernelfit.convolve(image, kernels.gaussian(7, 1.5), boundary="edge") + \
        rng.standard_normal(image.shape)
    with pytest.warns(kernelfit.IdentifiabilityWarning, match=r"no coefficient of the kernel "
                      r"differs from zero by more than 3 standard errors .* the data do not "
                      r"determine this kernel"):
        fit = kernelfit.fit_kernel(image, output, 7)
    assert fit.identifiable and fit.condition_number > 1e8


@pytest.mark.parametrize("size, kwargs, message", [
    (41, {}, r"need about .* GiB \(1681 taps: a 41x41 kernel\) and 0\.1 GiB of memory is "
             r"available; about \d+x\d+ would fit: pass a smaller size$"),
    ("auto", dict(max_size=41), r"size='auto' searches up to 41x41.* or max_size$"),
])
def test_a_fit_too_large_for_memory_is_refused_before_allocating(monkeypatch, size, kwargs,
                                                                  message):
    import kernelfit._fit

    monkeypatch.setattr(kernelfit._fit, "available_memory", lambda: 2**30 // 10)
    x = np.random.default_rng(0).standard_normal((200, 200))
    with pytest.raises(MemoryError, match=message):
        kernelfit.fit_kernel(x, x, size, **kwargs)


def test_the_cli_reports_a_fit_too_large_for_memory_on_one_line(files, capsys, monkeypatch):
    import kernelfit._fit

    monkeypatch.setattr(kernelfit._fit, "available_memory", lambda: 2**20)
    assert main(["fit", str(files["before"]), str(files["after"]), "--size", "25"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kernelfit: error: out of memory: the normal equations need") and \
        err.count("\n") == 1 and "25x25 kernel" in err


@pytest.mark.parametrize("scale, message", [
    (1e150, r"input has values up to 3\.\de\+150: the sums of their products overflow "
            r"float64\. Divide input and output by powers of ten"),
    (1e-160, r"input has values of at most 3\.\de-160: the sums of their products underflow "
             r"float64\. Multiply input and output"),
    (1e-200, r"underflow float64"),
])
def test_extreme_scales_are_refused_saying_what_to_do(scale, message):
    x = np.random.default_rng(0).standard_normal((20, 20))
    y = kernelfit.convolve(x, kernels.box(3))
    with pytest.raises(ValueError, match=message):
        kernelfit.fit_kernel(x * scale, y * scale, 3)


@pytest.mark.parametrize("scale", [1e130, 1e-130])
def test_large_and_small_scales_within_float64_fit_exactly(scale):
    x = np.random.default_rng(0).standard_normal((20, 20))
    y = kernelfit.convolve(x, kernels.box(3))
    fit = kernelfit.fit_kernel(x * scale, y * scale, 3)
    np.testing.assert_allclose(fit.kernel, kernels.box(3), atol=1e-10)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, y: kernelfit.fit_kernel(x, y, 3, mask=[[True] * 20] * 19 + [[True] * 19]),
     TypeError, r"mask must be a boolean array \(or nested lists of booleans of one shape\)"),
    (lambda x, y: kernelfit.fit_kernel([x, x[0]], [y, y[0]], 3), ValueError,
     r"input\[1\] has 1 dimensions and input\[0\] 2: every pair must have the same"),
])
def test_malformed_arguments_name_themselves(call, error, message):
    x = np.random.default_rng(0).standard_normal((20, 20))
    with pytest.raises(error, match=message):
        call(x, kernelfit.convolve(x, kernels.box(3)))


@pytest.mark.parametrize("channels", ["separate", "full"])
def test_an_output_channel_without_usable_samples_is_named(channels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 20, 2))
    y = kernelfit.convolve(x, np.ones((3, 3)), channel_axis=-1, channels="shared")
    mask = np.ones(y.shape, bool)
    mask[..., 1] = False
    with pytest.raises(ValueError, match=r"output channel 1 has no usable samples \(all "
                                         r"masked out or saturated\): nothing determines its"):
        kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels=channels, mask=mask)


def test_a_failed_write_names_the_output_not_its_hidden_temporary(files, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/.k.json.abc123.json")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = files["tmp"] / "k.json"
    assert main(["fit", str(files["before"]), str(files["after"]), "--size", "3", "-q", "-o",
                 str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"kernelfit: error: {target}: cannot write in {files['tmp']}: " \
                  f"Permission denied\n"


def test_writing_a_file_leaves_the_umask_alone(files):
    old = os.umask(0o027)
    try:
        assert main(["apply", str(files["before"]), "box:size=3", "-q", "-o",
                     str(files["tmp"] / "u.png")]) == 0
        assert os.umask(0o027) == 0o027
        assert stat.S_IMODE(os.stat(files["tmp"] / "u.png").st_mode) == 0o640
    finally:
        os.umask(old)
