"""The fit's covariance (fit.covariance) and the re-synthesised output's uncertainty
(fit.predict(input, return_std=True)): against numpy's inverse normal equations, consistent
with the standard errors on every path, and calibrated against repeated noisy fits."""

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import kernelfit
from kernelfit import kernels


@pytest.mark.parametrize("method", ["lstsq-dense", "lstsq-stats"])
@pytest.mark.parametrize("weighted", [False, True])
def test_covariance_is_the_scaled_inverse_of_the_normal_equations(rng, method, weighted):
    x = rng.standard_normal((30, 34))
    y = kernelfit.convolve(x, rng.standard_normal((3, 4)), mode="valid",
                           convention="correlation") + 2.0
    y = y + 0.1 * rng.standard_normal(y.shape)
    w = rng.uniform(0.2, 3.0, y.shape) if weighted else np.ones(y.shape)
    fit = kernelfit.fit_kernel(x, y, (3, 4), mode="valid", convention="correlation",
                               bias=True, method=method, checks=False,
                               weights=w if weighted else None)
    A = np.c_[sliding_window_view(x, (3, 4)).reshape(-1, 12), np.ones(y.size)]
    root = np.sqrt(w.ravel())
    As, ys = A * root[:, None], y.ravel() * root
    solution = np.linalg.lstsq(As, ys, rcond=None)[0]
    residual = ys - As @ solution
    expected = np.linalg.inv(As.T @ As) * (residual @ residual) / (y.size - 13)
    np.testing.assert_allclose(fit.covariance, expected, rtol=1e-7, atol=1e-14)


CALLS = [
    dict(method="lstsq-dense"), dict(method="lstsq-stats"), dict(method="pinv"),
    dict(method="ridge", options={"reg": 3.0}),
    dict(method="lstsq-stats", constraints={"sum": 1.0, "nonneg": True}),
    dict(method="lstsq-stats", constraints={"rank": 1}),
    dict(method="lstsq-stats", prior={"laplacian": "gcv"}),
    dict(noise="poisson", gain=50.0),
    dict(loss="huber"),
]


@pytest.mark.parametrize("call, channels", [
    (call, channels) for call in CALLS for channels in (None, "separate", "full")
    if not (channels == "full" and "rank" in call.get("constraints", {}))])  # (refused)
def test_the_diagonal_is_the_standard_errors(rng, call, channels):
    if channels is None:
        x = rng.uniform(1, 10, (28, 30))
        kernel = kernels.gaussian(3, 1.0)
        options = {}
    else:
        x = rng.uniform(1, 10, (28, 30, 2))
        kernel = (np.stack([kernels.gaussian(3, 1.0)] * 2, axis=-1) if channels == "separate"
                  else np.einsum("ij,kl->ijkl", kernels.gaussian(3, 1.0), np.eye(2)))
        options = dict(channel_axis=-1, channels=channels)
    y = kernelfit.convolve(x, kernel, **options) + 0.05 * rng.standard_normal(x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kernelfit.ModelWarning)
        fit = kernelfit.fit_kernel(x, y, 3, bias=True, **options, **call)
    size = fit.kernel.size
    variance = np.diag(fit.covariance)
    held = np.asarray(fit.stderr).ravel() == 0  # (non-negative: held at the bound)
    np.testing.assert_allclose(np.sqrt(variance[:size])[~held],
                               np.asarray(fit.stderr).ravel()[~held], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(variance[size:]), np.ravel(fit.bias_stderr),
                               rtol=1e-6)
    np.testing.assert_allclose(fit.covariance, fit.covariance.T, atol=1e-15)


def test_the_covariance_follows_the_convention(rng):
    x = rng.standard_normal((30, 30))
    y = kernelfit.convolve(x, rng.standard_normal((3, 2)), convention="correlation")
    y = y + 0.1 * rng.standard_normal(y.shape)
    correlation = kernelfit.fit_kernel(x, y, (3, 2), convention="correlation", checks=False)
    convolution = kernelfit.fit_kernel(x, y, (3, 2), convention="convolution", checks=False)
    order = np.flip(np.arange(6).reshape(3, 2)).ravel()
    np.testing.assert_allclose(convolution.covariance,
                               correlation.covariance[np.ix_(order, order)], rtol=1e-10)


def test_the_prediction_uncertainty_is_calibrated():
    """Over 300 noisy fits of the same input, the spread of the re-synthesised output at
    each sample is the standard error predict reports."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((24, 24))
    clean = kernelfit.convolve(x, kernels.gaussian(3, 1.0), boundary="edge") + 1.0
    predictions = []
    for _ in range(300):
        y = clean + 0.2 * rng.standard_normal(clean.shape)
        fit = kernelfit.fit_kernel(x, y, 3, boundary="edge", bias=True, checks=False)
        predictions.append(fit.predict(x))
    _, std = fit.predict(x, return_std=True)
    ratio = np.std(predictions, axis=0) / std
    assert 0.88 < np.median(ratio) < 1.12
    assert std.shape == clean.shape and np.all(std > 0)


def test_large_fits_keep_no_covariance(rng):
    x = rng.standard_normal((120, 120))
    fit = kernelfit.fit_kernel(x, x, 47, checks=False)
    assert fit.covariance is None
    with pytest.raises(ValueError, match="return_std needs the fit's covariance"):
        fit.predict(x, return_std=True)
