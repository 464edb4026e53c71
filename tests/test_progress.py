"""Progress of long work: a callback or a tqdm bar on stderr, per call, never by default."""

import threading

import numpy as np
import pytest

import kernelfit
from kernelfit import kernels


@pytest.fixture
def pair():
    x = np.random.default_rng(0).standard_normal((1500, 1500))
    return x, kernelfit.convolve(x, kernels.gaussian(5, 1.0))


def test_a_callback_sees_every_tile_of_both_passes(pair, monkeypatch):
    from kernelfit import _statistics

    monkeypatch.setattr(_statistics, "TILE_ELEMENTS", 1 << 18)  # several tiles
    calls = []
    fit = kernelfit.fit_kernel(*pair, 5, progress=lambda *a: calls.append(a))
    np.testing.assert_allclose(fit.kernel, kernels.gaussian(5, 1.0), atol=1e-10)
    stages = [stage for stage, _, _ in calls]
    assert stages[0] == "statistics" and stages[-1] == "residual"
    assert stages == sorted(stages, key=["statistics", "residual"].index)
    for stage in ("statistics", "residual"):
        counts = [(done, total) for s, done, total in calls if s == stage]
        assert counts[0][0] == 0 and counts[-1][0] == counts[-1][1] > 2
        assert all(a[0] < b[0] for a, b in zip(counts, counts[1:]))


def test_a_bar_on_stderr_only_when_asked(pair, capsys):
    kernelfit.fit_kernel(*pair, 5)
    assert capsys.readouterr() == ("", "")
    kernelfit.fit_kernel(*pair, 5, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "kernelfit: statistics" in err and "tile" in err


def test_fits_in_threads_report_separately(pair):
    seen = {}

    def fit(name):
        kernelfit.fit_kernel(*pair, 5, progress=lambda *a: seen.setdefault(name, []).append(a))

    threads = [threading.Thread(target=fit, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["a"] == seen["b"] and seen["a"][-1][0] == "residual"


@pytest.mark.parametrize("progress", ["yes", 1, [print]])
def test_progress_is_checked(progress):
    x = np.ones((10, 10))
    with pytest.raises(TypeError, match=r"progress must be True, False or a callable"):
        kernelfit.fit_kernel(x, x, 3, progress=progress)


def test_an_animation_reports_its_frames(tmp_path):
    from kernelfit.plot import sliding_window_gif

    calls = []
    image = np.arange(36.0).reshape(6, 6)
    frames = sliding_window_gif(tmp_path / "a.gif", image, np.ones((3, 3)),
                                progress=lambda *a: calls.append(a))
    assert frames == 16 and calls[0] == ("frames", 0, 16) and calls[-1] == ("frames", 16, 16)
