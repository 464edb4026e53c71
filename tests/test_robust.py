"""Robust fits (fit_kernel(loss='huber' or 'cauchy')): outliers do not move the kernel, at
most 6 passes over the pixels, outliers counted and drawn, and bad combinations refused."""

import warnings

import numpy as np
import pytest

import kernelfit
from experiments._common import CountingArray
from kernelfit import data, kernels

KERNEL = kernels.gaussian(5, 1.0)


def scene(seed, outliers=0.01, side=160):
    """A crop of the portrait blurred with noise of RMS 2; a share of the output samples
    replaced by uniform values over 0..255 (gross outliers), and where."""
    rng = np.random.default_rng(seed)
    photo = data.portrait()[150:150 + side, 150:150 + side].astype(float)
    clean = kernelfit.convolve(photo, KERNEL, boundary="edge")
    noisy = clean + 2.0 * rng.standard_normal(clean.shape)
    wrong = rng.random(noisy.shape) < outliers
    spoiled = noisy.copy()
    spoiled[wrong] = rng.uniform(0, 255, int(wrong.sum()))
    return photo, noisy, spoiled, wrong


def error(fit):
    return float(np.sqrt(np.mean((fit.kernel - KERNEL) ** 2)))


def fit(x, y, **options):
    with warnings.catch_warnings():
        # the plain fit of spoiled data rightly warns that its residual is not noise
        warnings.simplefilter("ignore", kernelfit.ModelWarning)
        return kernelfit.fit_kernel(x, y, 5, boundary="edge", **options)


@pytest.mark.parametrize("loss", ["huber", "cauchy"])
@pytest.mark.parametrize("method", ["lstsq", "lstsq-stats"])
def test_outliers_do_not_move_a_robust_kernel(loss, method):
    """1% of the samples wrong: the robust kernel is within 1.2x of the error of least
    squares on the clean output (averaged over 3 seeds); least squares is not."""
    clean, robust, plain = [], [], []
    for seed in range(3):
        x, noisy, spoiled, _ = scene(seed)
        clean.append(error(fit(x, noisy, method=method)))
        robust.append(error(fit(x, spoiled, loss=loss, method=method)))
        plain.append(error(fit(x, spoiled, method=method)))
    assert np.mean(robust) <= 1.2 * np.mean(clean)
    assert np.mean(plain) > 2 * np.mean(clean)


def test_robust_fit_of_clean_data_is_nearly_least_squares():
    x, noisy, _, _ = scene(4)
    plain = fit(x, noisy)
    robust = fit(x, noisy, loss="huber")
    assert error(robust) <= 1.1 * error(plain)
    assert robust.robust["scale"] == pytest.approx(2.0, rel=0.1)  # the noise's sigma


def test_outliers_are_counted_and_masked():
    x, _, spoiled, wrong = scene(5)
    result = fit(x, spoiled, loss="cauchy")
    mask = result.outlier_mask(x, spoiled)
    assert mask.shape == spoiled.shape and mask.sum() == result.robust["outliers"]
    # the planted outliers far from the truth are found; few others
    gross = wrong & (np.abs(spoiled - kernelfit.convolve(x, KERNEL, boundary="edge")) > 20)
    assert mask[gross].mean() > 0.98
    assert (mask & ~wrong).sum() < 0.005 * mask.size
    assert f"{result.robust['outliers']} outliers" in str(result)
    with pytest.raises(ValueError, match="outlier_mask needs a robust fit"):
        fit(x, spoiled).outlier_mask(x, spoiled)


@pytest.mark.parametrize("loss", ["huber", "cauchy"])
def test_a_robust_fit_reads_the_pixels_at_most_six_times(loss):
    x, _, spoiled, _ = scene(6, side=200)
    counted = CountingArray(x), CountingArray(spoiled)
    kernelfit.fit_kernel(*counted, 5, boundary="edge", loss=loss, method="lstsq-stats",
                         checks=False)
    passes = [c.read / c.array.size for c in counted]
    assert max(passes) <= 6.2, passes  # (the halo of each tile's window: a few % more)


def test_robust_on_dask_agrees_with_memory():
    da = pytest.importorskip("dask.array")
    x, _, spoiled, _ = scene(7, side=96)
    here = kernelfit.fit_kernel(x, spoiled, 5, boundary="edge", loss="huber",
                                method="lstsq-stats", checks=False)
    lazy = kernelfit.fit_kernel(da.from_array(x, chunks=(40, 48)),
                                da.from_array(spoiled, chunks=(50, 30)), 5, boundary="edge",
                                loss="huber", checks=False)
    np.testing.assert_allclose(lazy.kernel, here.kernel, atol=1e-12)
    assert lazy.robust["outliers"] == here.robust["outliers"]
    assert lazy.robust["scale"] == pytest.approx(here.robust["scale"], rel=0.05)


def test_an_exact_fit_has_nothing_to_reweight(rng):
    x = rng.standard_normal((40, 40))
    y = kernelfit.convolve(x, KERNEL)
    result = kernelfit.fit_kernel(x, y, 5, loss="huber")
    assert np.abs(result.kernel - KERNEL).max() < 1e-10
    assert result.robust["outliers"] == 0 and not result.outlier_mask(x, y).any()


@pytest.mark.parametrize("call, words", [
    (dict(loss="l1"), "loss must be one of 'squared', 'huber', 'cauchy'"),
    (dict(loss="huber", weights=np.ones((20, 20))), "does not combine with weights (pass "
     "noise="),
])
def test_bad_losses_are_refused_by_name(rng, call, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(ValueError) as info:
        kernelfit.fit_kernel(x, x, 3, **call)
    assert words in str(info.value)


def test_cli_robust_fit_reports_and_draws_the_outliers(tmp_path, capsys):
    from kernelfit._cli import main

    x, _, spoiled, _ = scene(8, side=120)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", spoiled)
    plot = tmp_path / "fit.png"
    status = main(["fit", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--size", "5",
                   "--boundary", "edge", "--loss", "huber", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert status == 0 and "robust fit: huber loss" in out and "outliers beyond 3" in out
    assert plot.stat().st_size > 0


def test_a_robust_fit_under_a_noise_model():
    """Photon noise and 1% cosmic rays: noise='poisson' with loss='huber' comes within 1.1x
    of the noise model's fit of the clean output (either alone does not), its errors
    calibrated, its outliers those of the standardised residual."""
    from test_noise import KERNEL, poisson_pair

    rng = np.random.default_rng(8)
    errors = {"both": [], "noise": [], "clean": []}
    pulls = []
    options = dict(mode="valid", noise="poisson", gain=2.0, read_noise=3.0, checks=False)
    for _ in range(25):
        x, clean = poisson_pair(rng, gain=2.0, read=3.0, shape=(64, 64))
        spoiled = clean.copy()
        hits = rng.random(clean.shape) < 0.01
        spoiled[hits] += rng.uniform(50, 500, int(hits.sum()))
        both = kernelfit.fit_kernel(x, spoiled, 3, loss="huber", **options)
        errors["both"].append(np.sqrt(np.mean((both.kernel - KERNEL) ** 2)))
        errors["noise"].append(np.sqrt(np.mean((kernelfit.fit_kernel(
            x, spoiled, 3, **options).kernel - KERNEL) ** 2)))
        errors["clean"].append(np.sqrt(np.mean((kernelfit.fit_kernel(
            x, clean, 3, **options).kernel - KERNEL) ** 2)))
        pulls.append((both.kernel - KERNEL) / both.stderr)
    assert np.mean(errors["both"]) < 1.1 * np.mean(errors["clean"])
    assert np.mean(errors["noise"]) > 1.5 * np.mean(errors["clean"])
    assert 0.85 < np.std(pulls) < 1.2
    assert both.robust["scale"] == pytest.approx(1.0, rel=0.15)  # standardised residuals
    assert both.outlier_mask(x, spoiled).sum() == both.robust["outliers"]
    assert both.noise["model"] == "poisson"
