"""Noise models (fit_kernel(noise='poisson', gain=..., read_noise=...)): weights that are the
model's inverse variances at the kernel's own prediction, standard errors calibrated by the
known variance, and bad parameters refused by name."""

import numpy as np
import pytest

import kernelfit
from kernelfit import kernels

KERNEL = kernels.gaussian(3, 0.8)


def poisson_pair(rng, gain, read, shape=(24, 24), ramp=True):
    """A scene from dark to bright (photon noise matters unequally), its blurred expected
    output, and a Poisson draw of it (in output units) plus read noise."""
    x = rng.uniform(0, 1000, shape)
    if ramp:
        x = x * (np.arange(shape[0])[:, None] / shape[0]) ** 2
    mu = kernelfit.convolve(x, KERNEL, mode="valid")
    y = rng.poisson(mu * gain) / gain + read * rng.standard_normal(mu.shape)
    return x, y


def test_poisson_standard_errors_are_calibrated():
    """Pulls over 300 simulations: unit spread with the noise model; the plain fit's
    errors (one variance for all) are not calibrated on the same data."""
    rng = np.random.default_rng(11)
    pulls, plain_pulls = [], []
    for _ in range(300):
        x, y = poisson_pair(rng, gain=2.0, read=3.0)
        fit = kernelfit.fit_kernel(x, y, 3, mode="valid", noise="poisson", gain=2.0,
                                   read_noise=3.0, checks=False)
        plain = kernelfit.fit_kernel(x, y, 3, mode="valid", checks=False)
        pulls.append((fit.kernel - KERNEL) / fit.stderr)
        plain_pulls.append((plain.kernel - KERNEL) / plain.stderr)
    assert 0.9 < np.std(pulls) < 1.1
    assert np.std(plain_pulls) > 1.2
    assert abs(np.mean(pulls)) < 0.1


def test_poisson_fit_reports_the_model(rng):
    x, y = poisson_pair(rng, gain=4.0, read=1.0, shape=(60, 60))
    fit = kernelfit.fit_kernel(x, y, 3, mode="valid", noise="poisson", gain=4.0,
                               read_noise=1.0)
    assert fit.noise["model"] == "poisson" and fit.noise["gain"] == 4.0
    assert 1 <= fit.noise["refits"] <= 4
    assert 0.85 < fit.noise["chi2_dof"] < 1.15
    assert fit.weighted and "noise: poisson, gain 4, read noise 1" in str(fit)
    # a wrong gain shows in chi^2/dof
    wrong = kernelfit.fit_kernel(x, y, 3, mode="valid", noise="poisson", gain=40.0,
                                 read_noise=1.0, checks=False)
    assert wrong.noise["chi2_dof"] > 3


@pytest.mark.parametrize("method", ["lstsq-dense", "lstsq-stats"])
def test_poisson_weights_are_the_inverse_variance_at_the_prediction(rng, method):
    """The last refit is the weighted fit with weights 1 / variance at its start's
    prediction; at convergence that is the fit's own prediction (to the kernel's
    tolerance)."""
    x, y = poisson_pair(rng, gain=2.0, read=2.0, shape=(40, 40))
    fit = kernelfit.fit_kernel(x, y, 3, mode="valid", noise="poisson", gain=2.0,
                               read_noise=2.0, method=method, checks=False)
    mu = fit.predict(x)
    weights = 1 / (4.0 + np.maximum(mu, 0) / 2.0)
    again = kernelfit.fit_kernel(x, y, 3, mode="valid", weights=weights, method=method,
                                 checks=False)
    assert np.abs(again.kernel - fit.kernel).max() < 1e-2 * fit.stderr.max()


def test_poisson_with_constraints_and_on_dask(rng):
    da = pytest.importorskip("dask.array")
    x, y = poisson_pair(rng, gain=2.0, read=1.0, shape=(48, 50))
    options = dict(mode="valid", noise="poisson", gain=2.0, read_noise=1.0,
                   constraints={"sum": 1.0, "symmetry": "mirror"})
    here = kernelfit.fit_kernel(x, y, 3, method="lstsq-stats", **options)
    assert here.kernel.sum() == pytest.approx(1.0, abs=1e-12)
    lazy = kernelfit.fit_kernel(da.from_array(x, chunks=(20, 25)),
                                da.from_array(y, chunks=(23, 24)), 3, **options)
    np.testing.assert_allclose(lazy.kernel, here.kernel, atol=1e-12)
    np.testing.assert_allclose(lazy.stderr, here.stderr, rtol=1e-8)
    assert lazy.noise == here.noise


@pytest.mark.parametrize("call, error, words", [
    (dict(noise="gaussian", gain=1.0), ValueError, "noise must be one of 'poisson', 'auto' or None"),
    (dict(noise="poisson"), ValueError, "noise='poisson' needs gain"),
    (dict(noise="poisson", gain=0), ValueError, "gain must be a finite number > 0"),
    (dict(noise="poisson", gain=np.nan), ValueError, "gain must be a finite number > 0"),
    (dict(noise="poisson", gain=True), ValueError, "gain must be a finite number > 0"),
    (dict(noise="poisson", gain=1e-300), ValueError, "between 1e-100 and 1e100"),
    (dict(noise="poisson", gain=1.0, read_noise=1e200), ValueError, "between 1e-100 and"),
    (dict(noise="poisson", gain=1.0, read_noise=-1), ValueError,
     "read_noise must be a finite number >= 0"),
    (dict(gain=2.0), ValueError, "gain is a parameter of noise='poisson'"),
    (dict(read_noise=2.0), ValueError, "read_noise is a parameter of noise='poisson'"),
    (dict(noise="poisson", gain=1.0, weights=np.ones((20, 20))), ValueError,
     "weights and noise both weight the samples"),
])
def test_bad_noise_parameters_are_refused_by_name(rng, call, error, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(error) as info:
        kernelfit.fit_kernel(x, x, 3, **call)
    assert words in str(info.value)


def test_cli_noise(tmp_path, capsys, rng):
    from kernelfit._cli import main
    from kernelfit._io import read_fit

    x, y = poisson_pair(rng, gain=2.0, read=1.0, shape=(50, 50), ramp=False)
    np.save(tmp_path / "x.npy", x[1:-1, 1:-1])  # a 'same' pair: the valid part's centre
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "big.npy", x)
    assert main(["fit", str(tmp_path / "big.npy"), str(tmp_path / "y.npy"), "--size", "3",
                 "--noise", "poisson:gain=2,read=1", "-o", str(tmp_path / "k.json")]) == 0
    out = capsys.readouterr().out
    assert "noise model: poisson, gain 2, read noise 1" in out and "chi^2/dof" in out
    assert read_fit(tmp_path / "k.json")[0].noise["gain"] == 2.0
    for flag, words in (("poisson:gain=-1", "--noise gain must be a finite number > 0"),
                        ("poisson:read=1", "poisson needs gain=G"),
                        ("gauss:gain=1", "expected poisson:gain=G")):
        assert main(["fit", str(tmp_path / "big.npy"), str(tmp_path / "y.npy"), "--size",
                     "3", "--noise", flag]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1


def test_auto_finds_the_photon_noise_and_is_calibrated():
    """noise='auto': the variance against the level, fitted to the least-squares residual,
    gives the gain and read noise, and standard errors as calibrated as the known model's."""
    rng = np.random.default_rng(21)
    pulls, gains, reads = [], [], []
    for _ in range(150):
        x, y = poisson_pair(rng, gain=2.0, read=3.0, shape=(48, 48))
        fit = kernelfit.fit_kernel(x, y, 3, mode="valid", noise="auto", checks=False)
        assert fit.noise["level_dependent"]
        pulls.append((fit.kernel - KERNEL) / fit.stderr)
        gains.append(fit.noise["gain"])
        reads.append(fit.noise["read_noise"])
    assert 0.9 < np.std(pulls) < 1.1
    assert np.median(gains) == pytest.approx(2.0, rel=0.1)
    assert np.median(reads) == pytest.approx(3.0, rel=0.15)
    assert "auto: photon-like, gain" in str(fit)


def test_auto_on_constant_noise_is_least_squares(rng):
    x = rng.standard_normal((64, 64))
    y = kernelfit.convolve(x, KERNEL) + 0.1 * rng.standard_normal(x.shape)
    fit = kernelfit.fit_kernel(x, y, 3, noise="auto")
    plain = kernelfit.fit_kernel(x, y, 3)
    assert not fit.noise["level_dependent"] and len(fit.noise["curve"]) >= 3
    np.testing.assert_array_equal(fit.kernel, plain.kernel)
    assert "does not grow with the level" in str(fit)


def test_auto_refuses_given_parameters(rng):
    x = rng.standard_normal((20, 20))
    with pytest.raises(ValueError, match="noise='auto' estimates the variance"):
        kernelfit.fit_kernel(x, x, 3, noise="auto", gain=2.0)


def test_cli_noise_auto(tmp_path, capsys, rng):
    from kernelfit._cli import main
    from kernelfit._io import read_fit

    x, y = poisson_pair(rng, gain=2.0, read=1.0, shape=(80, 80), ramp=False)
    np.save(tmp_path / "big.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert main(["fit", str(tmp_path / "big.npy"), str(tmp_path / "y.npy"), "--size", "3",
                 "--noise", "auto", "-o", str(tmp_path / "k.json")]) == 0
    out = capsys.readouterr().out
    assert "noise model: auto: photon-like, gain" in out
    noise = read_fit(tmp_path / "k.json")[0].noise
    assert noise["model"] == "auto" and noise["level_dependent"] and noise["gain"] > 0
