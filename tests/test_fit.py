"""fit_kernel: exact recovery, honest diagnostics, and agreement with independent solvers."""

import contextlib
import itertools
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

import kernelfit
from kernelfit import IdentifiabilityWarning, data, fit_kernel, kernels

BOUNDARIES = ["fill", "edge", "wrap", "symmetric", "reflect"]


def _recovers(fit, kernel, *, bias=None, rtol=1e-10):
    scale = np.abs(kernel).max()
    np.testing.assert_allclose(fit.kernel, kernel, rtol=0, atol=rtol * scale)
    if bias is not None:
        np.testing.assert_allclose(fit.bias, bias, rtol=0, atol=rtol * max(1, np.abs(bias).max()))
    assert fit.identifiable


def forward_design(x, size, *, mode, boundary, convention="convolution", origin=0,
                   fillvalue=0.0):
    """The patch matrix built column by column from the forward model (not from windows)."""
    columns = []
    for index in itertools.product(*(range(k) for k in size)):
        unit = np.zeros(size)
        unit[index] = 1.0
        columns.append(kernelfit.convolve(x, unit, mode=mode, boundary=boundary or "fill",
                                          convention=convention, origin=origin,
                                          fillvalue=fillvalue))
    A = np.stack([c.ravel() for c in columns], axis=1)
    if boundary is None and mode == "same":
        interior = np.zeros(columns[0].shape, bool)
        pads = kernelfit._geometry.padding(size, mode, convention,
                                           (origin,) * len(size) if np.isscalar(origin)
                                           else origin)
        interior[tuple(slice(b, n - a) for (b, a), n in zip(pads, x.shape))] = True
        return A[interior.ravel()], interior
    return A, np.ones(columns[0].shape, bool)


# --- the worked examples -------------------------------------------------------------------

def test_classic_answer_case_comes_back_exactly(rng):
    image = rng.standard_normal((20, 10))
    fit = fit_kernel(image, kernelfit.convolve(image, np.diag([1.0, 1, 1])), 3)
    _recovers(fit, np.diag([1.0, 1, 1]))
    assert fit.mode == "same" and fit.boundary is None and fit.n_equations == 18 * 8


def test_1d_full_example_comes_back_exactly():
    fit = fit_kernel([1, 3, 5, 7, 9, 11, 13], [2, 9, 25, 55, 93, 131, 169, 177, 166, 104], 4)
    assert fit.mode == "full"
    _recovers(fit, np.array([2.0, 3, 6, 8]))


def test_1d_valid_example_is_reported_not_identifiable():
    x = [1, 3, 5, 7, 9, 11, 13]
    with pytest.warns(IdentifiabilityWarning, match=r"only 2 independent combinations of the 4"):
        fit = fit_kernel(x, kernelfit.convolve(x, [2, 3, 6, 8], mode="valid"), 4)
    assert fit.mode == "valid" and fit.rank == 2 and not fit.identifiable
    assert np.all(np.isnan(fit.stderr))
    # Still a least-squares solution: it reproduces the data.
    np.testing.assert_allclose(fit.predict(x), kernelfit.convolve(x, [2, 3, 6, 8], mode="valid"))


# --- noiseless recovery over the geometry -------------------------------------------------

@pytest.mark.parametrize("mode", ["same", "valid", "full"])
@pytest.mark.parametrize("boundary", [None] + BOUNDARIES)
@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("size", [(3, 3), (2, 4), (4, 1)])
def test_recovers_2d_every_geometry(rng, mode, boundary, convention, size):
    x = rng.standard_normal((14, 12))
    k = rng.standard_normal(size)
    y = kernelfit.convolve(x, k, mode=mode, boundary=boundary or "fill", fillvalue=0.3,
                           convention=convention)
    fit = fit_kernel(x, y, size, boundary=boundary, fillvalue=0.3, convention=convention)
    _recovers(fit, k)
    assert fit.mode == mode
    expected_boundary = "fill" if boundary is None and mode == "full" else boundary
    assert fit.boundary == expected_boundary
    predicted = fit.predict(x)
    finite = np.isfinite(predicted)
    assert finite.sum() >= fit.n_equations
    np.testing.assert_allclose(predicted[finite], y[finite], atol=1e-10 * np.abs(y).max())


@pytest.mark.parametrize("shape,size", [((40,), (5,)), ((40,), (6,)), ((9, 8, 10), (3, 2, 3)),
                                        ((8, 9, 7), (2, 2, 2))])
@pytest.mark.parametrize("mode", ["same", "valid", "full"])
@pytest.mark.parametrize("complex_", [False, True])
def test_recovers_1d_and_3d_real_and_complex(rng, shape, size, mode, complex_):
    x = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_ else 0)
    k = rng.standard_normal(size) + (1j * rng.standard_normal(size) if complex_ else 0)
    fit = fit_kernel(x, kernelfit.convolve(x, k, mode=mode, boundary="wrap"), size,
                     boundary="wrap")
    _recovers(fit, k)
    assert np.iscomplexobj(fit.kernel) == complex_


@pytest.mark.parametrize("origin", [(-1, 0), (1, 1), (0, -1)])
@pytest.mark.parametrize("convention", ["convolution", "correlation"])
def test_origin(rng, origin, convention):
    x, k = rng.standard_normal((15, 13)), rng.standard_normal((4, 3))
    if convention == "correlation":
        origin = tuple(-o for o in origin)
    y = kernelfit.convolve(x, k, origin=origin, convention=convention, boundary="edge")
    for boundary in (None, "edge"):
        fit = fit_kernel(x, y, (4, 3), origin=origin, convention=convention, boundary=boundary)
        _recovers(fit, k)
        assert fit.origin == origin


@pytest.mark.parametrize("complex_", [False, True])
def test_bias(rng, complex_):
    x = rng.standard_normal((16, 16)) + (1j * rng.standard_normal((16, 16)) if complex_ else 0)
    k = kernels.emboss()
    offset = 128.0 + (3j if complex_ else 0)
    y = kernelfit.convolve(x, k) + offset
    fit = fit_kernel(x, y, 3, bias=True)
    _recovers(fit, k, bias=offset)
    assert fit.n_unknowns == 10 and fit.rank == 10
    np.testing.assert_allclose(fit.predict(x)[1:-1, 1:-1], y[1:-1, 1:-1])
    with pytest.warns(kernelfit.ModelWarning, match=r"the filter adds an offset the model "
                                                   r"lacks .* Fit it with bias=True"):
        without = fit_kernel(x, y, 3)
    assert without.bias is None and without.residual_rms > 1


def test_several_pairs_share_one_kernel(rng):
    k = rng.standard_normal((3, 3))
    inputs = [rng.standard_normal((6, 7)), rng.standard_normal((5, 9)), rng.standard_normal((8, 5))]
    outputs = [kernelfit.convolve(x, k) for x in inputs]
    fit = fit_kernel(inputs, outputs, 3)
    _recovers(fit, k)
    assert fit.n_equations == 4 * 5 + 3 * 7 + 6 * 3


def test_tiny_pairs_together_determine_what_one_cannot(rng):
    k = rng.standard_normal((3, 3))
    inputs = [rng.standard_normal((4, 4)) for _ in range(3)]  # 4 equations each
    outputs = [kernelfit.convolve(x, k) for x in inputs]
    with pytest.warns(IdentifiabilityWarning, match=r"More output samples \(a larger image, more pairs\)"):
        assert not fit_kernel(inputs[0], outputs[0], 3).identifiable
    _recovers(fit_kernel(inputs, outputs, 3), k)


# --- colour channels ------------------------------------------------------------------------

def test_channels_shared_separate_full_and_grey(rng):
    image = rng.standard_normal((18, 16, 3))
    spatial = rng.standard_normal((3, 3))
    fit = fit_kernel(image, kernelfit.convolve(image, spatial, channel_axis=-1), 3,
                     channel_axis=-1, bias=True)
    _recovers(fit, spatial)
    assert fit.bias.shape == (3,) and fit.channels == "shared"

    per_channel = rng.standard_normal((3, 3, 3))
    y = np.stack([kernelfit.convolve(image[..., c], per_channel[..., c]) + c for c in range(3)],
                 axis=-1)
    fit = fit_kernel(image, y, 3, channel_axis=2, channels="separate", bias=True)
    _recovers(fit, per_channel, bias=np.arange(3.0))
    np.testing.assert_allclose(fit.predict(image)[1:-1, 1:-1], y[1:-1, 1:-1])

    layer = rng.standard_normal((3, 3, 3, 4))
    y = kernelfit.correlate(image, layer, channel_axis=-1) + np.array([1.0, 2, 3, 4])
    fit = fit_kernel(image, y, 3, channel_axis=-1, channels="full", convention="correlation",
                     bias=True)
    _recovers(fit, layer, bias=np.array([1.0, 2, 3, 4]))
    np.testing.assert_allclose(fit.predict(image)[1:-1, 1:-1], y[1:-1, 1:-1])

    to_grey = rng.standard_normal((3, 3, 3))
    y = kernelfit.convolve(image, to_grey, channel_axis=-1) + 0.5
    fit = fit_kernel(image, y, 3, channel_axis=-1, bias=True)
    _recovers(fit, to_grey, bias=0.5)
    assert fit.kernel.shape == (3, 3, 3) and fit.channels == "full" and np.isscalar(fit.bias)


def test_channel_axis_first_and_full_with_per_channel_masks(rng):
    image = rng.standard_normal((2, 12, 11))
    layer = rng.standard_normal((2, 3, 2, 3))
    y = kernelfit.convolve(image, layer, channel_axis=0, boundary="wrap")
    mask = rng.random(y.shape) > 0.2  # different samples per output channel
    fit = fit_kernel(image, y, (2, 3), channel_axis=0, channels="full", boundary="wrap",
                     mask=mask)
    _recovers(fit, layer)
    assert fit.n_masked == int((~mask).sum())
    np.testing.assert_allclose(fit.predict(image), y, atol=1e-10)


def test_shared_kernel_uses_more_equations_than_one_channel(rng):
    image = data.portrait(color=True)[200:260, 200:260]
    k = kernels.gaussian(5, 1.0)
    y = kernelfit.synth.synthesize(image, k, channel_axis=-1, noise=2.0, rng=1)
    shared = fit_kernel(image, y, 5, channel_axis=-1)
    single = fit_kernel(image[..., 0], y[..., 0], 5)
    assert shared.n_equations == 3 * single.n_equations
    assert np.nanmax(shared.stderr) < np.nanmax(single.stderr)


# --- agreement with independent solvers -----------------------------------------------------

@pytest.mark.parametrize("mode,boundary", [("same", None), ("same", "reflect"), ("valid", None),
                                           ("full", None), ("full", "wrap")])
def test_lstsq_is_scipy_lstsq_on_the_forward_design(rng, mode, boundary):
    x = rng.standard_normal((11, 9))
    y_clean = kernelfit.convolve(x, kernels.sobel("x"), mode=mode, boundary=boundary or "fill")
    y = y_clean + 0.1 * rng.standard_normal(y_clean.shape)
    A, rows = forward_design(x, (3, 3), mode=mode, boundary=boundary)
    expected = scipy.linalg.lstsq(A, y[rows])[0].reshape(3, 3)
    fit = fit_kernel(x, y, 3, boundary=boundary)
    np.testing.assert_allclose(fit.kernel, expected, atol=1e-12)
    residual = y[rows] - A @ expected.ravel()
    np.testing.assert_allclose(fit.residual_rms, np.sqrt(np.mean(residual ** 2)))
    np.testing.assert_allclose(fit.r2, 1 - np.sum(residual ** 2) / np.sum(
        (y[rows] - y[rows].mean()) ** 2))
    s = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(fit.condition_number, s[0] / s[-1])
    cov = np.sum(residual ** 2) / (A.shape[0] - 9) * np.linalg.inv(A.T @ A)
    np.testing.assert_allclose(fit.stderr.ravel(), np.sqrt(np.diag(cov)), rtol=1e-8)


def test_pinv_is_numpy_pinv_with_rcond(rng):
    x = data.smooth_field((30, 30), correlation_length=3, rng=2)
    y = kernelfit.convolve(x, kernels.box(5)) + 1e-3 * rng.standard_normal((30, 30))
    A, rows = forward_design(x, (5, 5), mode="same", boundary=None)
    # (the untruncated kernel is off by ~10 with standard errors ~20: the fit says so)
    undetermined = pytest.warns(kernelfit.IdentifiabilityWarning,
                                match="the data do not determine this kernel")
    for rcond in (None, 1e-3):
        with undetermined if rcond is None else contextlib.nullcontext():
            fit = fit_kernel(x, y, 5, method="pinv", options={"rcond": rcond})
        pinv = np.linalg.pinv(A) if rcond is None else np.linalg.pinv(A, rcond=rcond)
        np.testing.assert_allclose(fit.kernel.ravel(), pinv @ y[rows], atol=1e-10)
    with undetermined:
        plain = fit_kernel(x, y, 5)
    truncated = fit_kernel(x, y, 5, method="pinv", options={"rcond": 1e-3})
    assert truncated.residual_rms > plain.residual_rms


def test_ridge_closed_form_with_unpenalised_bias(rng):
    x = rng.standard_normal((15, 14))
    y = kernelfit.convolve(x, kernels.laplacian()) + 5.0 + 0.2 * rng.standard_normal((15, 14))
    A, rows = forward_design(x, (3, 3), mode="same", boundary=None)
    b = y[rows]
    lam = 7.5
    Ac, bc = A - A.mean(axis=0), b - b.mean()
    k = np.linalg.solve(Ac.T @ Ac + lam * np.eye(9), Ac.T @ bc)
    fit = fit_kernel(x, y, 3, method="ridge", options={"reg": lam}, bias=True)
    np.testing.assert_allclose(fit.kernel.ravel(), k, atol=1e-10)
    np.testing.assert_allclose(fit.bias, b.mean() - A.mean(axis=0) @ k, atol=1e-10)
    assert fit.reg == lam
    # (without a bias, the model lacks the offset: checks=False keeps that warning quiet)
    np.testing.assert_allclose(fit_kernel(x, y, 3, method="ridge", options={"reg": 0.0},
                                          checks=False).kernel,
                               fit_kernel(x, y, 3, checks=False).kernel, atol=1e-12)


def test_ridge_gcv_minimises_generalised_cross_validation(rng):
    x = data.smooth_field((40, 40), correlation_length=2.0, rng=3)
    y = kernelfit.convolve(x, kernels.gaussian(5, 1.0)) + 0.01 * rng.standard_normal((40, 40))
    fit = fit_kernel(x, y, 5, method="ridge", options={"reg": "gcv"})
    A, rows = forward_design(x, (5, 5), mode="same", boundary=None)
    b = y[rows]
    n = len(b)

    def gcv(lam):
        H = A @ np.linalg.solve(A.T @ A + lam * np.eye(25), A.T)
        return n * np.sum((b - H @ b) ** 2) / (n - np.trace(H)) ** 2

    assert gcv(fit.reg) <= 1.0001 * min(gcv(lam) for lam in np.logspace(-12, 2, 57))
    assert 0 < fit.reg


# --- noisy data: stderr is honest ------------------------------------------------------------

def test_stderr_covers_the_true_kernel(rng):
    x = rng.standard_normal((24, 24))
    k = kernels.random((3, 3), rng=4)
    clean = kernelfit.convolve(x, k)
    z = []
    for _ in range(300):
        fit = fit_kernel(x, clean + 0.5 * rng.standard_normal(clean.shape), 3, bias=True)
        z.append((fit.kernel - k) / fit.stderr)
        z.append(np.array([fit.bias / fit.bias_stderr]))
    z = np.concatenate([v.ravel() for v in z])
    coverage = np.mean(np.abs(z) < 1.96)
    assert 0.93 < coverage < 0.97
    assert 0.9 < np.std(z) < 1.1


# --- under-determined data -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["classic 6x6 with 5x5", "constant", "checkerboard", "sinusoid",
                                  "too few samples"])
def test_underdetermined_warns_and_returns_minimum_norm(rng, case):
    x = {"classic 6x6 with 5x5": rng.standard_normal((6, 6)),
         "constant": np.full((20, 20), 3.0),
         "checkerboard": data.checkerboard((24, 24), square=1),
         "sinusoid": data.sinusoid((24, 24), period=6.0),
         "too few samples": rng.standard_normal((4, 4))}[case]
    size = 5 if case == "classic 6x6 with 5x5" else 3
    y = kernelfit.convolve(x, kernels.gaussian(size, 1.0))
    with pytest.warns(IdentifiabilityWarning) as record:
        fit = fit_kernel(x, y, size)
    message = str(record[0].message)
    assert f"of the {size * size} unknowns" in message and "would help" in message
    assert not fit.identifiable and fit.rank < fit.n_unknowns
    A, rows = forward_design(x, (size, size), mode="same", boundary=None)
    expected = np.linalg.lstsq(A, y[rows], rcond=None)[0]
    np.testing.assert_allclose(fit.kernel.ravel(), expected, atol=1e-8)
    assert np.isnan(fit.stderr).any()
    assert np.all(np.isfinite(fit.kernel))


def test_classic_6x6_case_numbers(rng):
    x = rng.standard_normal((6, 6))
    with pytest.warns(IdentifiabilityWarning, match=r"only 4 independent combinations of the "
                                                    r"25 unknowns \(4 equations\)"):
        fit = fit_kernel(x, kernelfit.convolve(x, kernels.random((5, 5), rng=0)), 5)
    assert fit.condition_number == np.inf


# --- masks and saturation ---------------------------------------------------------------------

def test_mask_leaves_out_corrupted_samples(rng):
    x = rng.standard_normal((30, 30))
    k = kernels.gaussian(3, 0.8)
    y = kernelfit.convolve(x, k)
    corrupted = y.copy()
    corrupted[10:14, 5:20] = 100.0
    mask = np.ones(y.shape, bool)
    mask[10:14, 5:20] = False
    fit = fit_kernel(x, corrupted, 3, mask=mask)
    _recovers(fit, k)
    assert fit.n_masked == 4 * 15
    assert np.abs(fit_kernel(x, corrupted, 3, checks=False).kernel - k).max() > 0.01


def test_saturated_8bit_samples_are_left_out():
    image = data.portrait()[100:228, 150:278]
    k = kernels.sharpen(2.0)
    y = kernelfit.synth.synthesize(image, k, dtype=np.uint8)
    assert (y == 0).sum() > 100 and (y == 255).sum() > 100
    auto = fit_kernel(image, y, 3)
    with pytest.warns(kernelfit.ModelWarning):  # clipping is not linear
        kept = fit_kernel(image, y, 3, saturated=False)
    assert auto.n_masked == int(((y[1:-1, 1:-1] == 0) | (y[1:-1, 1:-1] == 255)).sum())
    assert np.abs(auto.kernel - k).max() < 0.01 < np.abs(kept.kernel - k).max()
    limits = fit_kernel(image, y.astype(float), 3, saturated=(0, 255))
    np.testing.assert_allclose(limits.kernel, auto.kernel)
    assert fit_kernel(image, y, 3, saturated=True).n_masked == auto.n_masked


# --- memory --------------------------------------------------------------------------------

def test_windows_are_views_until_the_used_rows_are_taken(rng):
    from kernelfit._operator import Operator
    block = rng.standard_normal((1, 50, 40, 1))
    windows = Operator((3, 3), "shared", 1, 1).on(block).windows()
    assert windows.shape == (1, 48, 38, 1, 3, 3)
    assert np.shares_memory(windows, block)


def test_memmap_inputs_are_read_not_converted_whole(tmp_path, rng):
    x = rng.integers(0, 255, (64, 48)).astype(np.uint8)
    y = kernelfit.synth.synthesize(x, kernels.gaussian(3, 1.0), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    fit = fit_kernel(np.load(tmp_path / "x.npy", mmap_mode="r"),
                     np.load(tmp_path / "y.npy", mmap_mode="r"), 3)
    np.testing.assert_allclose(fit.kernel, fit_kernel(x, y, 3).kernel)


@pytest.mark.parametrize("method", ["lstsq-dense", "pinv"])
def test_too_large_for_the_dense_path_is_a_clear_error(method):
    x = np.broadcast_to(np.linspace(0, 1, 4096), (4096, 4096))
    with pytest.raises(ValueError, match=r"the dense patch matrix would take 27\.9 GiB "
                                         r"\(16662724 equations x 225 unknowns; limit 2 GiB\); "
                                         r"method='lstsq' solves it exactly"):
        fit_kernel(x, x, 15, method=method)


# --- errors --------------------------------------------------------------------------------

X = np.random.default_rng(0).standard_normal((10, 9))
Y = kernelfit.convolve(X, np.ones((3, 3)))


@pytest.mark.parametrize("args,kwargs,error,message", [
    ((X, Y[:, :8], 3), {}, ValueError,
     r"output spatial shape \(10, 8\) does not match input spatial shape \(10, 9\) with size "
     r"\(3, 3\) in any mode: expected \(10, 9\) for 'same', \(8, 7\) for 'valid', \(12, 11\) "
     r"for 'full'"),
    ((X, Y, 3), dict(mode="valid"), ValueError,
     r"output spatial shape \(10, 9\) does not fit mode='valid': expected \(8, 7\)"),
    ((X, Y, 11), {}, ValueError, r"size \(11, 11\) is larger than the input spatial shape"),
    ((X, Y, (3, 3, 3)), {}, ValueError, r"size must be an integer or a sequence of 2"),
    ((X, Y, 0), {}, ValueError, r"size must be at least 1"),
    ((np.where(X > 1, np.inf, X), Y, 3), {}, ValueError, r"input contains NaN or infinite"),
    ((X, np.where(Y > 1, np.nan, Y), 3), {}, ValueError, r"output contains NaN or infinite"),
    (([X, X], [Y], 3), {}, ValueError, r"input and output must have the same number of pairs"),
    (([X, X], Y, 3), {}, ValueError, r"input is a sequence of ndarrays \(several pairs\) but"),
    (([X, X[:, :5]], [Y, Y], 3), {}, ValueError,
     r"output\[1\] spatial shape \(10, 9\) does not match input spatial shape \(10, 5\)"),
    ((X, Y, 3), dict(mask=np.ones((10, 8), bool)), ValueError,
     r"mask has shape \(10, 8\); expected the output's shape or its spatial shape"),
    ((X, Y, 3), dict(mask=np.ones((10, 9))), TypeError, r"mask must be a boolean array"),
    (([X, X], [Y, Y], 3), dict(mask=np.ones((10, 9), bool)), ValueError,
     r"mask must be a sequence of 2 masks"),
    ((X, Y, 3), dict(mask=np.zeros((10, 9), bool)), ValueError,
     r"no output samples left to fit: all 56 usable samples are masked out or saturated"),
    ((X, np.full(Y.shape, 255, np.uint8), 3), {}, ValueError,
     r"no output samples left to fit: all 56 usable samples are masked out or saturated"),
    ((X, Y, 3), dict(method="svd"), ValueError,
     r"method must be one of 'lstsq', 'lstsq-dense', 'lstsq-stats', 'pinv', 'ridge', 'tf'; "
     r"got 'svd'"),
    ((X, Y, 3), dict(boundary="mirror"), ValueError, r"boundary must be one of"),
    ((X, Y, 3), dict(mode="small"), ValueError, r"mode must be one of 'full', 'same', 'valid'"),
    ((X, Y, 3), dict(convention="flipped"), ValueError, r"convention must be one of"),
    ((X, Y, 3), dict(channels="mixed"), ValueError,
     r"channels must be one of 'shared', 'separate', 'full'"),
    ((X, Y, 3), dict(bias="yes"), TypeError, r"bias must be True or False"),
    ((X, Y, 3), dict(method="ridge"), ValueError,
     r"method='ridge' needs options=\{'reg': ...\}: a non-negative number or 'gcv'"),
    ((X, Y, 3), dict(method="ridge", options={"reg": -1.0}), ValueError,
     r"options\['reg'\] must be non-negative or 'gcv'; got -1.0"),
    ((X, Y, 3), dict(method="ridge", options={"reg": "loo"}), TypeError,
     r"options\['reg'\] must be a real number"),
    ((X, Y, 3), dict(options={"reg": 1.0}), ValueError,
     r"options has 'reg', which method='lstsq' does not take \(it is an option of "
     r"method='ridge'\); method='lstsq' takes no options"),
    ((X, Y, 3), dict(method="pinv", options={"rcond": 2.0}), ValueError,
     r"options\['rcond'\] must be in \[0, 1\); got 2.0"),
    ((X, Y, 3), dict(method="ridge", options={"reg": 1.0, "rcond": 0.1}), ValueError,
     r"options has 'rcond', which method='ridge' does not take \(it is an option of "
     r"method='pinv'\); method='ridge' takes 'reg'"),
    ((X, Y, 3), dict(method="pinv", options={"tolerance": 0.1}), ValueError,
     r"options has 'tolerance', which method='pinv' does not take \(no method takes it\)"),
    ((X, Y, 3), dict(options=[("reg", 1.0)]), TypeError, r"options must be a dict"),
    ((X, Y, 3), dict(saturated="yes"), ValueError, r"saturated must be one of 'auto'"),
    ((X, Y, 3), dict(saturated=(5, 1)), ValueError, r"saturated limits must satisfy low < high"),
    ((X, Y, 3), dict(saturated=3), ValueError, r"saturated must be 'auto', True, False or a"),
    ((X, Y, 3), dict(origin=2), ValueError, r"origin=\(2, 2\) is out of range"),
    ((X, Y, 3), dict(channel_axis=2), ValueError, r"channel_axis=2 is out of range"),
    ((X, Y[:, :, None], 3), {}, ValueError,
     r"output must have as many dimensions as input \(2\) without a channel_axis"),
    ((np.ones((6, 6, 3)), np.ones((6, 6, 2)), 3), dict(channel_axis=-1), ValueError,
     r"channels='shared' needs as many output channels as input channels; got 3 in and 2 out"),
    ((np.ones((6, 6, 3)), np.ones((6, 6)), 3), dict(channel_axis=-1, channels="separate"),
     ValueError, r"channels='separate' needs an output with channels"),
    ((np.ones((6, 6, 3)), np.ones((6, 6, 3, 1)), 3), dict(channel_axis=-1), ValueError,
     r"output must have 3 dimensions \(with channels\) or 2 \(grey\)"),
    ((np.ones(6), np.ones(6), 3), dict(channel_axis=0), ValueError,
     r"input must have at least 2 dimensions with a channel_axis"),
])
def test_fit_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fit_kernel(*args, **kwargs)


def test_pairs_must_agree_on_mode(rng):
    x = rng.standard_normal((10, 10))
    with pytest.raises(ValueError, match=r"the pairs' shapes imply different modes"):
        fit_kernel([x, x], [x, x[1:-1, 1:-1]], 3)


# --- property-based: random shapes and kernels come back -----------------------------------

@st.composite
def fit_problems(draw):
    ndim = draw(st.integers(1, 3))
    size = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    # enough samples for the unknowns: each axis comfortably larger than the kernel
    shape = tuple(k + draw(st.integers({1: 12, 2: 4, 3: 2}[ndim], {1: 30, 2: 9, 3: 5}[ndim]))
                  for k in size)
    return dict(shape=shape, size=size, mode=draw(st.sampled_from(["same", "valid", "full"])),
                boundary=draw(st.sampled_from([None] + BOUNDARIES)),
                convention=draw(st.sampled_from(["convolution", "correlation"])),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@given(fit_problems())
def test_random_problems_come_back(problem):
    rng = np.random.default_rng(problem["seed"])
    x = rng.standard_normal(problem["shape"])
    k = rng.standard_normal(problem["size"])
    offset = 1.5 if problem["bias"] else 0.0
    y = kernelfit.convolve(x, k, mode=problem["mode"], boundary=problem["boundary"] or "fill",
                           convention=problem["convention"]) + offset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_kernel(x, y, problem["size"], boundary=problem["boundary"],
                         convention=problem["convention"], bias=problem["bias"])
    _recovers(fit, k, bias=offset if problem["bias"] else None, rtol=1e-8)


def test_ridge_gcv_per_channel_and_summary(rng):
    image = rng.standard_normal((20, 20, 2))
    y = kernelfit.convolve(image, kernels.box(3), channel_axis=-1)
    y[..., 1] += 0.5 * rng.standard_normal((20, 20))
    fit = fit_kernel(image, y, 3, channel_axis=-1, channels="separate", method="ridge",
                     options={"reg": "gcv"})
    assert fit.reg.shape == (2,) and fit.reg[0] < fit.reg[1]
    assert "ridge reg [" in str(fit)
    assert "ridge reg 2." in str(fit_kernel(image[..., 0], y[..., 0], 3, method="ridge",
                                            options={"reg": 2.0}))


def test_result_is_frozen_and_read_only(rng):
    x = rng.standard_normal((12, 12))
    fit = fit_kernel(x, kernelfit.convolve(x, kernels.box(3)), 3, bias=True)
    with pytest.raises(AttributeError):
        fit.kernel = None
    with pytest.raises(ValueError, match="read-only"):
        fit.kernel[0, 0] = 1.0
    text = str(fit)
    for part in ("3x3 kernel by 'lstsq-dense'", "residual RMS", "R^2", "identifiable: rank 10 of 10",
                 "bias:"):
        assert part in text
    assert "-0." not in text
