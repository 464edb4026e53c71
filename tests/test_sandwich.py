"""Sandwich standard errors (fit_kernel(errors='sandwich')): the HC0 covariance of least
squares, against numpy on the patch matrix; calibrated where the noise's variance varies and
the model's one-variance errors are not; refused where it does not apply."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import kernelfit
from kernelfit import kernels


def heteroscedastic(rng, shape=(40, 44), size=(3, 4), kernel=None):
    """Noise whose deviation grows with the square of the input sample at each window's
    centre (unmodelled)."""
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal(size) if kernel is None else kernel
    clean = kernelfit.convolve(x, kernel, mode="valid", convention="correlation") + 2.0
    spread = 0.05 + 0.5 * x[1:1 + clean.shape[0], 1:1 + clean.shape[1]] ** 2
    return x, clean + spread * rng.standard_normal(clean.shape), kernel


@pytest.mark.parametrize("method", ["lstsq-dense", "lstsq-stats"])
@pytest.mark.parametrize("convention", ["correlation", "convolution"])
def test_the_sandwich_is_hc0(rng, method, convention):
    x, y, _ = heteroscedastic(rng)
    fit = kernelfit.fit_kernel(x, y, (3, 4), mode="valid", convention=convention, bias=True,
                               errors="sandwich", method=method, checks=False)
    A = np.c_[sliding_window_view(x, (3, 4)).reshape(-1, 12), np.ones(y.size)]
    theta = np.linalg.lstsq(A, y.ravel(), rcond=None)[0]
    residual = y.ravel() - A @ theta
    bread = np.linalg.inv(A.T @ A)
    expected = bread @ (A.T * residual ** 2) @ A @ bread
    order = np.arange(12).reshape(3, 4)
    if convention == "convolution":
        order = order[::-1, ::-1]
    order = np.r_[order.ravel(), 12]
    np.testing.assert_allclose(fit.covariance, expected[np.ix_(order, order)], rtol=1e-9,
                               atol=1e-18)
    np.testing.assert_allclose(np.ravel(fit.stderr), np.sqrt(np.diag(expected))[order[:12]],
                               rtol=1e-9)
    assert fit.errors == "sandwich" and "stderr (sandwich)" in str(fit)


def test_the_sandwich_is_calibrated_where_the_model_is_not():
    rng = np.random.default_rng(4)
    kernel = kernels.gaussian(3, 1.0)
    pulls = {"model": [], "sandwich": []}
    for _ in range(200):
        x, y, _ = heteroscedastic(rng, shape=(30, 30), size=(3, 3), kernel=kernel)
        for errors in pulls:
            fit = kernelfit.fit_kernel(x, y, 3, mode="valid", convention="correlation",
                                       errors=errors, checks=False)
            pulls[errors].append((fit.kernel - kernel) / fit.stderr)
    pulls = {errors: np.array(values) for errors, values in pulls.items()}
    assert 0.9 < np.std(pulls["sandwich"]) < 1.12
    # the centre tap meets the sample whose noise grows with it: its variance is several
    # times what one variance for all says
    assert np.std(pulls["model"][:, 1, 1]) > 1.2
    assert 0.85 < np.std(pulls["sandwich"][:, 1, 1]) < 1.15


def test_the_sandwich_per_channel(rng):
    x = rng.standard_normal((30, 32, 2))
    kernel = np.stack([kernels.gaussian(3, 1.0), kernels.sharpen()], axis=-1)
    y = kernelfit.convolve(x, kernel, channel_axis=-1, channels="separate")
    y = y + (0.05 + 0.3 * np.abs(x)) * rng.standard_normal(y.shape)
    fit = kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels="separate", bias=True,
                               errors="sandwich", checks=False)
    for c in range(2):  # each channel its own least squares: its own sandwich
        alone = kernelfit.fit_kernel(x[..., c], y[..., c], 3, bias=True, errors="sandwich",
                                     checks=False)
        np.testing.assert_allclose(fit.stderr[..., c], alone.stderr, rtol=1e-8)
        assert fit.bias_stderr[c] == pytest.approx(alone.bias_stderr, rel=1e-8)


@pytest.mark.parametrize("call, words", [
    (dict(errors="robust"), "errors must be one of 'model', 'sandwich'"),
    (dict(errors="sandwich", weights=np.ones((20, 20))), "errors='sandwich' is for "
     "unweighted least squares"),
    (dict(errors="sandwich", loss="huber"), "errors='sandwich' is for unweighted"),
    (dict(errors="sandwich", noise="poisson", gain=1.0), "errors='sandwich' is for"),
])
def test_bad_errors_are_refused_by_name(rng, call, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(ValueError) as info:
        kernelfit.fit_kernel(x, x, 3, **call)
    assert words in str(info.value)


def test_a_joint_full_kernel_takes_no_sandwich(rng):
    x = rng.standard_normal((20, 20, 2))
    with pytest.raises(ValueError, match="one output channel per system"):
        kernelfit.fit_kernel(x, x, 3, channel_axis=-1, channels="full", errors="sandwich")


def test_cli_errors_sandwich(tmp_path, capsys, rng):
    from kernelfit._cli import main

    x, y, _ = heteroscedastic(rng, shape=(40, 40), size=(3, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.pad(y, 1))
    assert main(["fit", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--size", "3",
                 "--boundary", "none", "--errors", "sandwich", "-o",
                 str(tmp_path / "k.json")]) == 0
    assert "stderr (sandwich): largest" in capsys.readouterr().out
    from kernelfit._io import read_fit
    assert read_fit(tmp_path / "k.json")[0].errors == "sandwich"
    assert main(["fit", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--size", "3",
                 "--errors", "sandwich", "--loss", "huber"]) == 2
    assert "--errors sandwich is for unweighted least squares" in capsys.readouterr().err
