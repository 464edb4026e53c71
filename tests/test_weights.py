"""Weighted fits (fit_kernel(weights=...)): weighted least squares on every path, against
the reference (numpy's lstsq on rows scaled by sqrt(w)), reducing to the plain fit for equal
weights, calibrated standard errors for inverse-variance weights, and bad weights refused by
name."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import kernelfit
from kernelfit import kernels

METHODS = ["lstsq-dense", "lstsq-stats", "pinv"]


def reference(x, y, w, size, bias):
    """Weighted least squares of the 'valid' correlation windows, by numpy."""
    rows = sliding_window_view(x, size).reshape(-1, int(np.prod(size)))
    target = y.ravel()
    if bias:
        rows = np.c_[rows, np.ones(len(rows))]
    root = np.sqrt(w.ravel())
    return np.linalg.lstsq(rows * root[:, None], target * root, rcond=None)[0]


def valid_fit(x, y, size, **options):
    return kernelfit.fit_kernel(x, y, size, mode="valid", convention="correlation",
                                checks=False, **options)


@pytest.fixture
def noisy(rng):
    x = rng.standard_normal((40, 44))
    kernel = rng.standard_normal((3, 4))
    y = kernelfit.convolve(x, kernel, mode="valid", convention="correlation") + 2.0
    y = y + 0.1 * rng.standard_normal(y.shape)
    w = rng.uniform(0.1, 5.0, y.shape)
    return x, y, w


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bias", [False, True])
def test_weighted_fit_is_weighted_least_squares(noisy, method, bias):
    x, y, w = noisy
    fit = valid_fit(x, y, (3, 4), weights=w, method=method, bias=bias)
    expected = reference(x, y, w, (3, 4), bias)
    np.testing.assert_allclose(fit.kernel.ravel(), expected[:12], atol=1e-10)
    if bias:
        assert fit.bias == pytest.approx(expected[12], abs=1e-10)
    assert fit.weighted and fit.n_equations == y.size


@pytest.mark.parametrize("method", METHODS + ["ridge"])
@pytest.mark.parametrize("scale", [1.0, 7.0])
def test_equal_weights_are_the_plain_fit(noisy, method, scale):
    """Weights all equal (1, or any other value: weights are relative) change nothing."""
    x, y, _ = noisy
    options = dict(method=method, bias=True)
    if method == "ridge":
        options["options"] = {"reg": "gcv"}
    plain = valid_fit(x, y, (3, 4), **options)
    fit = valid_fit(x, y, (3, 4), weights=np.full(y.shape, scale), **options)
    np.testing.assert_allclose(fit.kernel, plain.kernel, atol=1e-10)
    np.testing.assert_allclose(fit.stderr, plain.stderr, rtol=1e-8)
    assert fit.bias == pytest.approx(plain.bias, abs=1e-10)
    assert fit.bias_stderr == pytest.approx(plain.bias_stderr, rel=1e-8)
    assert fit.r2 == pytest.approx(plain.r2, abs=1e-12)
    if scale == 1.0:
        assert fit.residual_rms == pytest.approx(plain.residual_rms, rel=1e-10)


def test_equal_weights_on_the_fft_statistics(rng):
    """A 7x7 kernel: the plain statistics come from the FFT, the weighted ones from the
    windows; equal weights give the same fit."""
    x = rng.standard_normal((90, 80))
    y = kernelfit.convolve(x, kernels.random((7, 7), rng=1)) + 0.01 * rng.standard_normal(
        x.shape)
    plain = kernelfit.fit_kernel(x, y, 7, method="lstsq-stats", checks=False)
    fit = kernelfit.fit_kernel(x, y, 7, method="lstsq-stats", checks=False,
                               weights=np.ones(x.shape))
    np.testing.assert_allclose(fit.kernel, plain.kernel, atol=1e-10)
    np.testing.assert_allclose(fit.stderr, plain.stderr, rtol=1e-7)


def test_zero_weights_are_a_mask(noisy):
    x, y, w = noisy
    w = w.copy()
    w[::3, 1::4] = 0
    masked = valid_fit(x, y, (3, 4), weights=np.where(w > 0, 1.0, 0.0))
    plain = valid_fit(x, y, (3, 4), mask=w > 0)
    np.testing.assert_allclose(masked.kernel, plain.kernel, atol=1e-10)
    assert masked.n_masked == plain.n_masked == int((w == 0).sum())


@pytest.mark.parametrize("channels", ["shared", "separate", "full"])
def test_weights_with_channels(rng, channels):
    x = rng.standard_normal((30, 32, 3))
    kernel = {"shared": kernels.gaussian(3, 1.0),
              "separate": rng.standard_normal((3, 3, 3)),
              "full": rng.standard_normal((3, 3, 3, 3))}[channels]
    y = kernelfit.convolve(x, kernel, channel_axis=-1, channels=channels, mode="valid",
                           convention="correlation")
    y = y + 0.1 * rng.standard_normal(y.shape)
    w = rng.uniform(0.2, 4.0, y.shape)
    fits = [kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels=channels, mode="valid",
                                 convention="correlation", checks=False, weights=w,
                                 method=method) for method in ("lstsq-dense", "lstsq-stats")]
    np.testing.assert_allclose(fits[0].kernel, fits[1].kernel, atol=1e-10)
    np.testing.assert_allclose(fits[0].stderr, fits[1].stderr, rtol=1e-7)
    if channels == "separate":  # each channel its own weighted least squares
        for c in range(3):
            expected = reference(x[..., c], y[..., c], w[..., c], (3, 3), False)
            np.testing.assert_allclose(fits[0].kernel[..., c].ravel(), expected, atol=1e-10)


def test_weights_over_several_pairs(rng):
    kernel = rng.standard_normal((3, 3))
    xs = [rng.standard_normal((20, 22)) for _ in range(3)]
    ys = [kernelfit.convolve(x, kernel, mode="valid", convention="correlation")
          + 0.1 * rng.standard_normal((18, 20)) for x in xs]
    ws = [rng.uniform(0.1, 3.0, y.shape) for y in ys]
    fit = valid_fit(xs, ys, 3, weights=ws)
    rows = np.concatenate([sliding_window_view(x, (3, 3)).reshape(-1, 9) for x in xs])
    root = np.sqrt(np.concatenate([w.ravel() for w in ws]))
    target = np.concatenate([y.ravel() for y in ys])
    expected = np.linalg.lstsq(rows * root[:, None], target * root, rcond=None)[0]
    np.testing.assert_allclose(fit.kernel.ravel(), expected, atol=1e-10)


def test_inverse_variance_weights_are_calibrated_and_better():
    """Noise whose spread grows 20-fold across the image: with weights 1/variance, the
    pulls have unit spread and the kernel error is smaller than the plain fit's."""
    rng = np.random.default_rng(3)
    kernel = np.array([[0.1, 0.2, 0.1], [0.2, -0.6, 0.3], [0.0, 0.1, 0.1]])
    sigma = np.linspace(0.02, 0.4, 22)[np.newaxis, :] * np.ones((20, 1))
    pulls, errors = [], {"weighted": [], "plain": []}
    for _ in range(300):
        x = rng.standard_normal((22, 24))
        y = kernelfit.convolve(x, kernel, mode="valid", convention="correlation")
        y = y + sigma * rng.standard_normal(y.shape)
        weighted = valid_fit(x, y, 3, weights=1 / sigma ** 2)
        plain = valid_fit(x, y, 3)
        pulls.append((weighted.kernel - kernel) / weighted.stderr)
        errors["weighted"].append(np.sqrt(np.mean((weighted.kernel - kernel) ** 2)))
        errors["plain"].append(np.sqrt(np.mean((plain.kernel - kernel) ** 2)))
    spread = np.array(pulls).std(axis=0)
    assert 0.88 < np.median(spread) < 1.12, spread
    assert np.mean(errors["weighted"]) < 0.6 * np.mean(errors["plain"])


def test_weights_with_size_auto_and_constraints(rng):
    x = rng.standard_normal((80, 80))
    kernel = kernels.gaussian(5, 1.0)
    sigma = np.where(np.arange(80)[:, None] < 40, 0.01, 0.2) * np.ones((1, 80))
    y = kernelfit.convolve(x, kernel) + sigma * rng.standard_normal(x.shape)
    fit = kernelfit.fit_kernel(x, y, "auto", weights=1 / sigma ** 2, max_size=9)
    assert fit.size == (5, 5)
    constrained = kernelfit.fit_kernel(x, y, 5, weights=1 / sigma ** 2,
                                       constraints={"sum": 1.0, "rank": 1})
    assert constrained.kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.abs(constrained.kernel - kernel).max() < np.abs(fit.kernel - kernel).max()


def test_weights_on_dask_agree_with_memory(rng):
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((64, 60))
    y = kernelfit.convolve(x, kernels.gaussian(5, 1.2)) + 0.05 * rng.standard_normal(
        x.shape)
    w = rng.uniform(0.5, 2.0, x.shape)
    here = kernelfit.fit_kernel(x, y, 5, weights=w, method="lstsq-stats")
    lazy = kernelfit.fit_kernel(da.from_array(x, chunks=(20, 32)),
                                da.from_array(y, chunks=(24, 30)), 5,
                                weights=da.from_array(w, chunks=(30, 17)))
    np.testing.assert_allclose(lazy.kernel, here.kernel, atol=1e-12)
    np.testing.assert_allclose(lazy.stderr, here.stderr, rtol=1e-8)
    bad = w.copy()
    bad[50, 7] = -1.0
    with pytest.raises(ValueError, match=r"weights must be finite and >= 0.*index \(50, 7\)"):
        kernelfit.fit_kernel(da.from_array(x, chunks=(20, 32)),
                             da.from_array(y, chunks=(24, 30)), 5,
                             weights=da.from_array(bad, chunks=(30, 17)))


@pytest.mark.parametrize("weights, error, words", [
    (lambda y: -np.ones(y.shape), ValueError, "weights must be finite and >= 0"),
    (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 5, np.nan, 1.0), ValueError,
     "weights must be finite and >= 0"),
    (lambda y: np.ones((3, 3)), ValueError, "weights has shape (3, 3); expected the "
     "output's shape"),
    (lambda y: np.ones(y.shape, dtype=bool), TypeError, "a boolean selection is mask="),
    (lambda y: np.ones(y.shape, dtype=complex), TypeError, "weights must be real numbers"),
    (lambda y: "heavy", TypeError, "weights must be a numeric array"),
    (lambda y: [np.ones(y.shape)] * 2, ValueError, "weights has shape"),
])
def test_bad_weights_are_refused_by_name(rng, weights, error, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(error) as info:
        kernelfit.fit_kernel(x, x, 3, weights=weights(x))
    assert words in str(info.value)


def test_weights_for_several_pairs_must_be_one_per_pair(rng):
    xs = [rng.standard_normal((20, 20)) for _ in range(2)]
    with pytest.raises(ValueError, match="weights must be a sequence of 2 arrays"):
        kernelfit.fit_kernel(xs, xs, 3, weights=np.ones((20, 20)))
    with pytest.raises(ValueError, match=r"weights\[1\] must be finite"):
        kernelfit.fit_kernel(xs, xs, 3, weights=[np.ones((20, 20)), -np.ones((20, 20))])


def test_cli_weights(tmp_path, capsys, rng):
    from kernelfit._cli import main

    x = rng.standard_normal((50, 50))
    y = kernelfit.convolve(x, kernels.gaussian(3, 0.8)) + 0.01 * rng.standard_normal(x.shape)
    paths = {name: tmp_path / f"{name}.npy" for name in ("x", "y", "w", "bad")}
    np.save(paths["x"], x)
    np.save(paths["y"], y)
    np.save(paths["w"], np.full(x.shape, 4.0))
    np.save(paths["bad"], -np.ones(x.shape))
    assert main(["fit", str(paths["x"]), str(paths["y"]), "--size", "3", "--weights",
                 str(paths["w"]), "-o", str(tmp_path / "k.json")]) == 0
    out = capsys.readouterr().out
    assert "fit: weighted residual RMS" in out and "PSNR" not in out
    from kernelfit._io import read_fit
    assert read_fit(tmp_path / "k.json")[0].weighted
    assert main(["fit", str(paths["x"]), str(paths["y"]), "--size", "3", "--weights",
                 str(paths["bad"])]) == 2
    err = capsys.readouterr().err
    assert "--weights must be finite and >= 0" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("size", [(3, 4), (6, 6)])  # (6, 6): 36 unknowns, summed by syrk/herk
def test_complex_weighted_fit(rng, size):
    x = rng.standard_normal((50, 52)) + 1j * rng.standard_normal((50, 52))
    kernel = rng.standard_normal(size) + 1j * rng.standard_normal(size)
    y = kernelfit.convolve(x, kernel, mode="valid", convention="correlation")
    y = y + 0.1 * rng.standard_normal(y.shape)
    w = rng.uniform(0.1, 5.0, y.shape)
    expected = reference(x, y, w, size, False)
    for method in ("lstsq-dense", "lstsq-stats"):
        fit = valid_fit(x, y, size, weights=w, method=method)
        np.testing.assert_allclose(fit.kernel.ravel(), expected, atol=1e-10)


def test_all_zero_weights_leave_nothing_to_fit(rng):
    from kernelfit._cli import _cli_words

    x = rng.standard_normal((20, 20))
    with pytest.raises(ValueError, match="masked out, saturated or of weight 0 \\(see mask=, "
                                         "saturated= and weights=\\)"):
        kernelfit.fit_kernel(x, x, 3, weights=np.zeros((20, 20)))
    assert _cli_words("(see mask=, saturated= and weights=)") == "(see --mask and --weights)"
