"""The smoothness prior (fit_kernel(prior={'laplacian': ...})): the regularised least squares
it says, against numpy on the patch matrix; GCV's weight; the free fit at weight 0; bad
priors refused by name."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import kernelfit
from kernelfit import kernels
from kernelfit._prior import laplacian

SMOOTH = kernels.gaussian(7, 1.5)


def pair(rng, noise=0.3, shape=(60, 64), kernel=SMOOTH, offset=0.0):
    x = rng.standard_normal(shape)
    y = kernelfit.convolve(x, kernel, mode="valid", convention="correlation") + offset
    return x, y + noise * rng.standard_normal(y.shape)


def fit(x, y, size, **options):
    return kernelfit.fit_kernel(x, y, size, mode="valid", convention="correlation",
                                checks=False, **options)


def reference(x, y, size, weight, bias):
    """``min |A k + b - y|^2 + weight |L k|^2`` by numpy (the bias unpenalised)."""
    A = sliding_window_view(x, size).reshape(-1, int(np.prod(size)))
    L = laplacian(size, 1)
    if bias:
        A = np.c_[A, np.ones(len(A))]
        L = np.c_[L, np.zeros(len(L))]
    return np.linalg.solve(A.T @ A + weight * L.T @ L, A.T @ y.ravel())


@pytest.mark.parametrize("weight", [0.0, 3.0, 300.0, "gcv"])
@pytest.mark.parametrize("bias", [False, True])
def test_the_prior_is_its_regularised_least_squares(rng, weight, bias):
    x, y = pair(rng, offset=2.0 if bias else 0.0)
    result = fit(x, y, 7, prior={"laplacian": weight}, bias=bias)
    used = result.prior["laplacian"]
    assert result.prior["chosen_by"] == ("gcv" if weight == "gcv" else "given")
    assert result.reg == used and (weight == "gcv" or used == weight)
    expected = reference(x, y, (7, 7), used, bias)
    np.testing.assert_allclose(result.kernel.ravel(), expected[:49], atol=1e-10)
    if bias:
        assert result.bias == pytest.approx(expected[49], abs=1e-10)


def test_weight_zero_is_the_free_fit(rng):
    x, y = pair(rng)
    free = fit(x, y, 7)
    result = fit(x, y, 7, prior={"laplacian": 0})
    np.testing.assert_allclose(result.kernel, free.kernel, atol=1e-10)
    np.testing.assert_allclose(result.stderr, free.stderr, rtol=1e-7)


def test_gcv_halves_the_error_of_a_noisy_smooth_kernel():
    errors = {"free": [], "gcv": []}
    for seed in range(4):
        x, y = pair(np.random.default_rng(seed))
        errors["free"].append(np.abs(fit(x, y, 7).kernel - SMOOTH).max())
        result = fit(x, y, 7, prior={"laplacian": "gcv"})
        errors["gcv"].append(np.abs(result.kernel - SMOOTH).max())
        assert np.all(result.stderr < fit(x, y, 7).stderr)  # shrunk, hence smaller
    assert np.mean(errors["gcv"]) < 0.7 * np.mean(errors["free"])


def test_the_laplacian_of_a_kernel_grid():
    L = laplacian((3, 4), 1)
    assert L.shape == (12, 12) and np.allclose(L, L.T)
    assert np.linalg.matrix_rank(L) == 12  # zero beyond the grid: invertible
    flat = np.ones(12)
    inner = (L @ flat).reshape(3, 4)
    assert inner[1, 1] == 0 and inner[0, 0] == -2  # a flat kernel bends only at its edges
    assert laplacian((3,), 2).shape == (6, 6)  # per input channel


def test_the_prior_with_channels_complex_data_and_dask(rng):
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((40, 44, 2))
    kernel = np.stack([SMOOTH[1:-1, 1:-1], SMOOTH[1:-1, 1:-1].T], axis=-1)
    y = kernelfit.convolve(x, kernel, channel_axis=-1, channels="separate")
    y = y + 0.2 * rng.standard_normal(y.shape)
    options = dict(channel_axis=-1, channels="separate", prior={"laplacian": "gcv"},
                   checks=False)
    here = kernelfit.fit_kernel(x, y, 5, method="lstsq-stats", **options)
    assert np.shape(here.prior["laplacian"]) in ((), (2,))
    lazy = kernelfit.fit_kernel(da.from_array(x, chunks=(20, 22, 2)),
                                da.from_array(y, chunks=(20, 22, 2)), 5, **options)
    np.testing.assert_allclose(lazy.kernel, here.kernel, atol=1e-12)
    z = x[..., 0] + 1j * x[..., 1]
    w = kernelfit.convolve(z, SMOOTH[1:-1, 1:-1]) + 0.1 * rng.standard_normal(z.shape)
    complex_fit = kernelfit.fit_kernel(z, w, 5, prior={"laplacian": 1.0}, checks=False)
    assert np.iscomplexobj(complex_fit.kernel)
    assert np.abs(complex_fit.kernel - SMOOTH[1:-1, 1:-1]).max() < 0.05


@pytest.mark.parametrize("call, words", [
    (dict(prior={"tv": 1.0}), "prior must be a dict {'laplacian': weight}"),
    (dict(prior="gcv"), "prior must be a dict {'laplacian': weight}"),
    (dict(prior={"laplacian": -1.0}), "prior['laplacian'] must be a number from 0 to 1e100, or 'gcv'"),
    (dict(prior={"laplacian": "lcurve"}), "prior['laplacian'] must be a number from 0 to 1e100"),
    (dict(prior={"laplacian": np.inf}), "prior['laplacian'] must be a number from 0 to 1e100"),
    (dict(prior={"laplacian": 1e300}), "prior['laplacian'] must be a number from 0 to 1e100"),
    (dict(prior={"laplacian": 1.0}, constraints={"sum": 1.0}), "cannot be combined"),
    (dict(prior={"laplacian": 1.0}, method="pinv"), "takes method='lstsq' or"),
])
def test_bad_priors_are_refused_by_name(rng, call, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(ValueError) as info:
        kernelfit.fit_kernel(x, x, 3, **call)
    assert words in str(info.value)


def test_cli_smooth(tmp_path, capsys, rng):
    from kernelfit._cli import main
    from kernelfit._io import read_fit

    x, y = pair(rng, shape=(50, 50))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.pad(y, 3))  # 'same' geometry, a frame of zeros
    status = main(["fit", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--size", "7",
                   "--boundary", "none", "--smooth", "gcv", "-o", str(tmp_path / "k.json")])
    out = capsys.readouterr().out
    assert status == 0 and "smoothness prior: the kernel's Laplacian penalised" in out
    assert read_fit(tmp_path / "k.json")[0].prior["chosen_by"] == "gcv"
    assert main(["fit", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--size", "7",
                 "--smooth", "-2"]) == 2
    assert "expected a weight >= 0 or gcv" in capsys.readouterr().err
