"""The statistics path (exact normal equations by FFT) against the dense SVD path."""

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernelfit
from kernelfit import _statistics, data, fit_kernel, kernels

BOUNDARIES = [None, "fill", "edge", "wrap", "symmetric", "reflect"]


def _same(dense, stats, rtol=1e-9):
    scale = np.abs(dense.kernel).max()
    assert np.abs(stats.kernel - dense.kernel).max() <= rtol * scale
    if dense.bias is not None:
        np.testing.assert_allclose(stats.bias, dense.bias, rtol=0,
                                   atol=rtol * max(1.0, np.abs(dense.bias).max()))
    assert (stats.rank, stats.n_unknowns, stats.n_equations, stats.n_masked) == (
        dense.rank, dense.n_unknowns, dense.n_equations, dense.n_masked)
    np.testing.assert_allclose(stats.condition_number, dense.condition_number, rtol=1e-6)
    np.testing.assert_allclose(stats.residual_rms, dense.residual_rms, rtol=1e-6)
    np.testing.assert_allclose(stats.stderr, dense.stderr, rtol=1e-5)


@st.composite
def problems(draw):
    ndim = draw(st.integers(1, 3))
    size = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    shape = tuple(k + draw(st.integers({1: 20, 2: 6, 3: 3}[ndim], {1: 60, 2: 14, 3: 6}[ndim]))
                  for k in size)
    return dict(shape=shape, size=size, mode=draw(st.sampled_from(["same", "valid", "full"])),
                boundary=draw(st.sampled_from(BOUNDARIES)),
                convention=draw(st.sampled_from(["convolution", "correlation"])),
                bias=draw(st.booleans()), complex_=draw(st.booleans()),
                channels=draw(st.sampled_from([None, "shared", "separate", "full", "grey"])),
                masked=draw(st.sampled_from([0.0, 0.1, 0.7])),
                tile=draw(st.sampled_from([1 << 22, 50])), seed=draw(st.integers(0, 2**32 - 1)))


@given(problems())
def test_statistics_path_agrees_with_the_dense_path(problem):
    rng = np.random.default_rng(problem["seed"])
    channels = problem["channels"]
    shape = problem["shape"] + ((3,) if channels else ())
    x = rng.standard_normal(shape)
    if problem["complex_"]:
        x = x + 1j * rng.standard_normal(shape)
    options = dict(mode=problem["mode"], boundary=problem["boundary"] or "fill",
                   convention=problem["convention"])
    kernel = rng.standard_normal(problem["size"] + {None: (), "shared": (), "separate": (),
                                                    "full": (3, 2), "grey": (3,)}[channels])
    if channels == "separate":
        y = np.stack([kernelfit.convolve(x[..., c], kernel, **options) for c in range(3)], -1)
    else:
        y = kernelfit.convolve(x, kernel, channel_axis=-1 if channels else None, **options)
    y = y + 0.1 * rng.standard_normal(y.shape) + (2.0 if problem["bias"] else 0.0)
    mask = rng.random(y.shape) >= problem["masked"] if problem["masked"] else None
    args = dict(boundary=problem["boundary"], convention=problem["convention"],
                bias=problem["bias"], mask=mask,
                channel_axis=-1 if channels else None,
                channels={"grey": "shared", None: "shared"}.get(channels, channels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kernelfit.IdentifiabilityWarning)
        dense = fit_kernel(x, y, problem["size"], method="lstsq-dense", **args)
        previous = _statistics.TILE_ELEMENTS
        _statistics.TILE_ELEMENTS = problem["tile"]
        try:
            stats = fit_kernel(x, y, problem["size"], method="lstsq-stats", **args)
        finally:
            _statistics.TILE_ELEMENTS = previous
    if dense.identifiable:
        _same(dense, stats)
    else:  # the same minimum-norm least-squares kernel: the same predictions
        assert stats.rank == dense.rank


@pytest.mark.parametrize("case", ["checkerboard", "sinusoid", "constant", "6x6"])
def test_undetermined_data_on_the_statistics_path(case):
    x = {"checkerboard": data.checkerboard((40, 40), square=1),
         "sinusoid": data.sinusoid((40, 40), period=6.0), "constant": np.full((30, 30), 2.0),
         "6x6": np.random.default_rng(0).standard_normal((6, 6))}[case]
    size = 5 if case == "6x6" else 3
    y = kernelfit.convolve(x, kernels.gaussian(size, 1.0))
    with pytest.warns(kernelfit.IdentifiabilityWarning):
        stats = fit_kernel(x, y, size, method="lstsq-stats")
    with pytest.warns(kernelfit.IdentifiabilityWarning):
        dense = fit_kernel(x, y, size, method="lstsq-dense")
    assert stats.rank == dense.rank < size * size
    np.testing.assert_allclose(stats.kernel, dense.kernel, atol=1e-12)


def test_lstsq_chooses_the_path_by_size_and_says_which():
    small = data.noise((40, 40), rng=0)
    fit = fit_kernel(small, kernelfit.convolve(small, kernels.box(3)), 3, checks=False)
    assert fit.method == "lstsq-dense"
    large = data.portrait().astype(float)  # 300k windows x 81 unknowns: 190 MB dense
    fit = fit_kernel(large, kernelfit.convolve(large, kernels.gaussian(9, 1.5)), 9,
                     checks=False)
    assert fit.method == "lstsq-stats"
    assert np.abs(fit.kernel - kernels.gaussian(9, 1.5)).max() < 1e-10


def test_photograph_with_a_large_kernel_to_1e_8():
    photo = data.portrait().astype(float)
    kernel = kernels.random((15, 15), rng=3)
    fit = fit_kernel(photo, kernelfit.convolve(photo, kernel), 15, method="lstsq-stats")
    assert np.abs(fit.kernel - kernel).max() < 1e-8 * np.abs(kernel).max()
    assert fit.identifiable and fit.condition_number > 100  # a badly conditioned photograph


def test_memmaps_are_fitted_tile_by_tile_in_bounded_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    shape = (1200, 1000)  # 9.6 MB per float64 array
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64, shape=shape)
    y = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float64, shape=shape)
    kernel = kernels.random((5, 5), rng=2)
    for start in range(0, shape[0], 300):  # written in pieces, never whole in memory
        rows = rng.standard_normal((300 + 4, shape[1]))
        x[start:start + 300] = rows[2:-2]
    x.flush()
    y[:] = kernelfit.convolve(np.asarray(x), kernel, boundary="reflect")
    y.flush()
    del x, y
    monkeypatch.setattr(_statistics, "TILE_ELEMENTS", 1 << 16)
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    tracemalloc.start()
    try:
        # (the model checks read two bands of at most 2^19 samples: checked elsewhere)
        fit = fit_kernel(x, y, 5, boundary="reflect", checks=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.abs(fit.kernel - kernel).max() < 1e-10
    print(f"traced peak {peak / 2**20:.1f} MiB for {(x.nbytes + y.nbytes) / 2**20:.1f} MiB of images")
    assert peak < 0.25 * (x.nbytes + y.nbytes)  # far below the two images


def test_benchmark_script_quick(tmp_path):
    from experiments import large_benchmark
    assert large_benchmark.main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "large_benchmark_quick.md").read_text()
    for method in ("fftconvolve", "lstsq-stats", "lstsq-stats+mask1%", "lstsq-dense", "classic"):
        assert f"| {method} |" in table
    assert (tmp_path / "large_benchmark_quick.csv").exists()
