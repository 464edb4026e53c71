"""Constrained fits (fit_kernel(constraints=...)): each constraint met exactly, optimal by
its own conditions (checked on the patch matrix, independently of the solver), reducing to
the free fit when inactive, with standard errors that cover the truth, and bad constraints
refused by name."""

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import kernelfit
from kernelfit import kernels


def patches(x, size):
    """The 'valid' correlation design: one row per output sample, taps in C order."""
    return sliding_window_view(x, size).reshape(-1, int(np.prod(size)))


def valid_pair(rng, shape, kernel, noise=0.0):
    x = rng.standard_normal(shape)
    y = kernelfit.convolve(x, kernel, mode="valid", convention="correlation")
    return x, y + noise * rng.standard_normal(y.shape)


def fit_valid(x, y, size, **constraints):
    return kernelfit.fit_kernel(x, y, size, mode="valid", convention="correlation",
                                checks=False, constraints=constraints)


NOISY = 0.05


@pytest.fixture
def signed(rng):
    """A 4x5 kernel with negative coefficients, its pair (noisy), the design."""
    kernel = rng.standard_normal((4, 5))
    kernel[0, 0], kernel[3, 4] = -1.0, -0.8
    x, y = valid_pair(rng, (30, 34), kernel, NOISY)
    return kernel, x, y, patches(x, (4, 5))


def test_nonneg_is_nnls(signed):
    kernel, x, y, A = signed
    fit = fit_valid(x, y, (4, 5), nonneg=True)
    expected = scipy.optimize.nnls(A, y.ravel())[0]
    np.testing.assert_allclose(fit.kernel.ravel(), expected, atol=1e-10)
    assert fit.kernel.min() == 0.0 and (fit.kernel == 0).sum() >= 2
    assert np.all(fit.stderr[fit.kernel == 0] == 0)
    assert np.all(fit.stderr[fit.kernel > 0] > 0)
    assert fit.constraints == {"nonneg": True}


def _lagrange_conditions(A, y, k, bounded):
    """The KKT conditions of min |A k - y|^2 s.t. sum k = s (and k >= 0 where `bounded`):
    the gradient equals one multiplier on the free coefficients and is no lower on those
    held at 0."""
    gradient = A.T @ (A @ k - y)
    free = ~bounded | (k > 0)
    nu = gradient[free].mean()
    scale = np.abs(A.T @ y).max()
    np.testing.assert_allclose(gradient[free], nu, atol=1e-9 * scale)
    assert np.all(gradient[~free] >= nu - 1e-9 * scale)


@pytest.mark.parametrize("nonneg", [False, True])
def test_sum_is_optimal(signed, nonneg):
    kernel, x, y, A = signed
    fit = fit_valid(x, y, (4, 5), sum=1.0, nonneg=nonneg)
    assert fit.kernel.sum() == pytest.approx(1.0, abs=1e-13)
    if nonneg:
        assert fit.kernel.min() >= 0
    _lagrange_conditions(A, y.ravel(), fit.kernel.ravel(),
                         np.full(A.shape[1], nonneg))


@pytest.mark.parametrize("symmetry", ["point", "mirror", "radial"])
def test_symmetry_is_least_squares_on_the_orbits(rng, symmetry):
    from kernelfit._constrain import symmetry_map

    size = (5, 4)
    x, y = valid_pair(rng, (30, 30), rng.standard_normal(size), NOISY)
    P = symmetry_map(size, symmetry, 1)
    expected = P @ np.linalg.lstsq(patches(x, size) @ P, y.ravel(), rcond=None)[0]
    fit = fit_valid(x, y, size, symmetry=symmetry)
    np.testing.assert_allclose(fit.kernel.ravel(), expected, atol=1e-10)
    k = fit.kernel
    if symmetry == "point":
        np.testing.assert_array_equal(k, k[::-1, ::-1])
    elif symmetry == "mirror":
        np.testing.assert_array_equal(k, k[::-1])
        np.testing.assert_array_equal(k, k[:, ::-1])
    else:  # radial: equal where the distances from the centre are
        i, j = np.indices(size)
        distance = (2 * i - 4) ** 2 + (2 * j - 3) ** 2
        for d in np.unique(distance):
            assert np.ptp(k[distance == d]) == 0


def test_orbits_count():
    from kernelfit._constrain import orbits

    assert orbits((5, 5), "point").max() + 1 == 13
    assert orbits((5, 5), "mirror").max() + 1 == 9
    assert orbits((5, 5), "radial").max() + 1 == 6   # distances 0 1 2 4 5 8
    assert orbits((4,), "mirror").max() + 1 == 2
    assert orbits((3, 3, 3), "radial").max() + 1 == 4


def test_rank_one_recovers_a_separable_kernel(rng):
    kernel = np.outer([1.0, -2.0, 0.5, 1.5], [0.3, 1.0, -0.7])
    x, y = valid_pair(rng, (40, 40), kernel)
    fit = fit_valid(x, y, (4, 3), rank=1)
    np.testing.assert_allclose(fit.kernel, kernel, atol=1e-10)
    assert fit.constraints == {"rank": 1}


@pytest.mark.parametrize("rank", [1, 2])
def test_rank_is_met_and_no_worse_than_its_start(rng, rank):
    """A rank-r fit of a full-rank kernel: rank r exactly, a residual no larger than the
    truncated SVD of the free fit (where alternating least squares starts), and no
    smaller than the free fit's."""
    kernel = rng.standard_normal((5, 5))
    x, y = valid_pair(rng, (40, 40), kernel, NOISY)
    A = patches(x, (5, 5))
    fit = fit_valid(x, y, 5, rank=rank)
    free = fit_valid(x, y, 5)
    s = np.linalg.svd(fit.kernel, compute_uv=False)
    assert s[rank] < 1e-12 * s[0]
    u, sv, vt = np.linalg.svd(free.kernel)
    truncated = (u[:, :rank] * sv[:rank]) @ vt[:rank]

    def rss(k):
        return np.sum((A @ k.ravel() - y.ravel()) ** 2)

    assert rss(free.kernel) <= rss(fit.kernel) <= rss(truncated)
    assert fit.residual_rms ** 2 * fit.n_equations == pytest.approx(rss(fit.kernel),
                                                                     rel=1e-9)


def test_rank_auto_finds_the_rank(rng):
    kernel = np.outer([1, 2, 1], [1, 0, -1]) + np.outer([0.5, -1, 2], [1, 1, 0.2])
    x, y = valid_pair(rng, (60, 60), kernel, NOISY)
    fit = fit_valid(x, y, 3, rank="auto")
    assert fit.constraints == {"rank": 2}
    assert set(fit.rank_scores) >= {1, 2} and min(fit.rank_scores,
                                                   key=fit.rank_scores.get) == 2
    assert "rank 2" in str(fit)


# --- inactive constraints give the free fit -------------------------------------------------

@pytest.mark.parametrize("which", ["sum", "nonneg", "symmetry", "rank", "all"])
def test_inactive_constraints_are_the_free_fit(rng, which):
    """Constraints the free solution already meets change nothing (to 1e-10)."""
    kernel = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25])  # positive, radial, rank 1
    x = rng.standard_normal((40, 40))
    y = kernelfit.convolve(x, kernel)
    free = kernelfit.fit_kernel(x, y, 3, checks=False)
    constraints = {"sum": free.kernel.sum(), "nonneg": True, "symmetry": "mirror",
                   "rank": 1}
    chosen = constraints if which == "all" else {which: constraints[which]}
    if which == "all":
        del chosen["rank"]  # (rank and symmetry do not combine)
    fit = kernelfit.fit_kernel(x, y, 3, checks=False, constraints=chosen)
    np.testing.assert_allclose(fit.kernel, free.kernel, atol=1e-10)


def test_inactive_sum_keeps_the_standard_errors_shape(rng):
    x, y = valid_pair(rng, (40, 40), rng.standard_normal((3, 3)), NOISY)
    free = fit_valid(x, y, 3)
    fit = fit_valid(x, y, 3, sum=free.kernel.sum())
    np.testing.assert_allclose(fit.kernel, free.kernel, atol=1e-10)
    # one fewer free parameter: every error smaller, none by much on 1500 samples
    assert np.all(fit.stderr < free.stderr * 1.001)
    assert np.all(fit.stderr > 0.8 * free.stderr)


# --- with bias, channels and several pairs ------------------------------------------------

@pytest.mark.parametrize("channels", ["shared", "separate", "full"])
def test_constraints_with_bias_and_channels(rng, channels):
    x = rng.standard_normal((36, 36, 3))
    base = kernels.gaussian(3, 0.8)
    if channels == "full":
        kernel = np.zeros((3, 3, 3, 3))  # each output: 0.9 of its channel, 0.1 of the next
        for c in range(3):
            kernel[..., c, c] = 0.9 * base
            kernel[..., (c + 1) % 3, c] = 0.1 * base
    elif channels == "separate":
        kernel = np.stack([base, base.T, base], axis=-1)
    else:
        kernel = base
    y = kernelfit.convolve(x, kernel, channel_axis=-1, channels=channels) + 3.0
    y = y + NOISY * rng.standard_normal(y.shape)
    fit = kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels=channels, bias=True,
                               checks=False, constraints={"sum": 1.0, "nonneg": True,
                                                          "symmetry": "point"})
    k = fit.kernel
    assert k.min() >= 0
    np.testing.assert_array_equal(k, k[::-1, ::-1])
    sums = k.sum(axis=(0, 1)) if channels != "full" else k.sum(axis=(0, 1, 2))
    np.testing.assert_allclose(sums, 1.0, atol=1e-13)
    np.testing.assert_allclose(fit.bias, 3.0, atol=0.05)
    assert np.all(np.isfinite(fit.bias_stderr)) and np.all(np.asarray(fit.bias_stderr) > 0)


def test_constraints_over_several_pairs_equal_one_stacked_fit(rng):
    kernel = kernels.gaussian(3, 1.0)
    pairs = [valid_pair(rng, (20, 24), kernel, NOISY) for _ in range(3)]
    fit = kernelfit.fit_kernel([p[0] for p in pairs], [p[1] for p in pairs], 3,
                               mode="valid", convention="correlation", checks=False,
                               constraints={"sum": 1.0, "symmetry": "radial"})
    from kernelfit._constrain import symmetry_map
    P = symmetry_map((3, 3), "radial", 1)
    A = np.concatenate([patches(p[0], (3, 3)) for p in pairs]) @ P
    b = np.concatenate([p[1].ravel() for p in pairs])
    # least squares with sum(P z) = 1, by the KKT system
    row = P.sum(axis=0)
    kkt = np.block([[A.T @ A, row[:, None]], [row[None, :], np.zeros((1, 1))]])
    z = np.linalg.solve(kkt, np.concatenate([A.T @ b, [1.0]]))[:-1]
    np.testing.assert_allclose(fit.kernel.ravel(), P @ z, atol=1e-10)


# --- standard errors ------------------------------------------------------------------------

@pytest.mark.parametrize("constraints", [{"sum": 1.0, "symmetry": "radial"},
                                         {"rank": 1}, {"nonneg": True, "sum": 1.0}])
def test_standard_errors_cover_the_truth(constraints):
    """Pulls (fit - truth) / stderr over 300 noisy fits have unit spread: the constrained
    covariance is calibrated."""
    rng = np.random.default_rng(5)
    kernel = np.outer([0.2, 0.6, 0.2], [0.3, 0.4, 0.3])  # sums to 1, radial? no: mirror
    if "symmetry" in constraints:
        kernel = np.array([[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]])
    pulls = []
    for _ in range(300):
        x, y = valid_pair(rng, (18, 18), kernel, 0.1)
        fit = fit_valid(x, y, 3, **constraints)
        held = fit.stderr == 0
        pulls.append(np.where(held, 0.0, (fit.kernel - kernel) / np.where(held, 1,
                                                                           fit.stderr)))
    pulls = np.array(pulls)
    spread = pulls.std(axis=0)
    assert 0.85 < np.median(spread) < 1.15, spread


# --- bad constraints ------------------------------------------------------------------------

@pytest.mark.parametrize("constraints, error, words", [
    ([("sum", 1)], TypeError, "must be a dict"),
    ({"positive": True}, ValueError, "'positive', which is not a constraint"),
    ({"nonneg": 1}, TypeError, "constraints['nonneg'] must be True or False"),
    ({"sum": "one"}, TypeError, "constraints['sum']"),
    ({"sum": np.nan}, ValueError, "constraints['sum'] must be finite"),
    ({"sum": -1.0, "nonneg": True}, ValueError, "cannot sum to -1.0"),
    ({"symmetry": "diagonal"}, ValueError, "constraints['symmetry'] must be one of"),
    ({"rank": 0}, ValueError, "constraints['rank'] must be a positive integer or 'auto'"),
    ({"rank": 1.5}, ValueError, "constraints['rank'] must be a positive integer"),
    ({"rank": True}, ValueError, "constraints['rank'] must be a positive integer"),
    ({"rank": 4}, ValueError, "above the kernel's smaller side: a 3x5 kernel has rank at most 3"),
    ({"rank": 1, "symmetry": "point"}, ValueError, "cannot be combined"),
])
def test_bad_constraints_are_refused_by_name(rng, constraints, error, words):
    x = rng.standard_normal((20, 20))
    with pytest.raises(error) as info:
        kernelfit.fit_kernel(x, x, (3, 5), constraints=constraints)
    assert words in str(info.value)


@pytest.mark.parametrize("call, words", [
    (dict(method="ridge", options={"reg": 1.0}), "take method='lstsq' or 'lstsq-stats'"),
    (dict(method="lstsq-dense"), "take method='lstsq' or 'lstsq-stats'"),
    (dict(one_d=True), "needs a 2-D kernel"),
    (dict(complex_data=True), "need real data"),
    (dict(full_channels=True), "one input channel per kernel"),
])
def test_constraints_the_data_cannot_take(rng, call, words):
    x = rng.standard_normal((20, 20))
    args = dict(constraints={"rank": 1})
    if call.pop("one_d", False):
        x = x[0]
    if call.pop("complex_data", False):
        x = x + 1j * x
    if call.pop("full_channels", False):
        x = np.stack([x, x], axis=-1)
        args.update(channel_axis=-1, channels="full")
    with pytest.raises(ValueError) as info:
        kernelfit.fit_kernel(x, x, 3, **args, **call)
    assert words in str(info.value)


def test_unreachable_sum_is_a_conflict():
    from kernelfit._constrain import minimise

    with pytest.raises(ValueError, match="the kernel's sum cannot be reached"):
        minimise(np.eye(3), np.ones(3), np.zeros(3), 1.0, False, 10)


def test_rank_above_the_found_size_is_refused(rng):
    x = rng.standard_normal((40, 40))
    y = kernelfit.convolve(x, kernels.box(3))
    with pytest.raises(ValueError, match="above the kernel's smaller side"):
        kernelfit.fit_kernel(x, y, "auto", max_size=5, constraints={"rank": 4})


# --- property: every combination is met exactly ------------------------------------------

@given(seed=st.integers(0, 2**16), nonneg=st.booleans(),
       total=st.sampled_from([None, 0.0, 1.0, 2.5]),
       shape=st.sampled_from([(3, 3), (2, 4), (5, 3)]),
       other=st.sampled_from([None, ("symmetry", "point"), ("symmetry", "mirror"),
                              ("symmetry", "radial"), ("rank", 1), ("rank", 2)]))
def test_every_combination_is_met_exactly(seed, nonneg, total, shape, other):
    rng = np.random.default_rng(seed)
    x, y = valid_pair(rng, (16, 17), rng.standard_normal(shape), 0.3)
    constraints = {"nonneg": nonneg}
    if total is not None:
        constraints["sum"] = total
    if other is not None:
        constraints[other[0]] = other[1]
    fit = fit_valid(x, y, shape, **constraints)
    k = fit.kernel
    assert np.all(np.isfinite(k)) and np.all(np.isfinite(fit.stderr))
    if nonneg:
        assert k.min() >= 0
    if total is not None:
        assert abs(k.sum() - total) <= 1e-12 * max(1.0, np.abs(k).sum())
    if other == ("symmetry", "point"):
        np.testing.assert_array_equal(k, k[::-1, ::-1])
    elif other == ("symmetry", "mirror"):
        np.testing.assert_array_equal(k, k[::-1, ::-1][::-1])
        np.testing.assert_array_equal(k, k[:, ::-1])
    elif other is not None and other[0] == "rank":
        s = np.linalg.svd(k, compute_uv=False)
        assert s[other[1]:].max(initial=0) <= 1e-10 * max(s[0], 1e-300)


# --- the command line ----------------------------------------------------------------------

@pytest.fixture
def blurred_files(tmp_path):
    from PIL import Image

    from kernelfit import data, synth

    image = data.portrait()[200:330, 180:320]
    output = synth.synthesize(image, kernels.gaussian(5, 1.0), dtype=np.uint8)
    paths = tmp_path / "sharp.png", tmp_path / "blurred.png"
    Image.fromarray(image).save(paths[0])
    Image.fromarray(output).save(paths[1])
    return str(paths[0]), str(paths[1])


def test_cli_fits_and_reports_the_constraints(blurred_files, capsys, tmp_path):
    from kernelfit._cli import main
    from kernelfit._io import read_fit

    path = tmp_path / "k.json"
    status = main(["fit", *blurred_files, "--size", "5", "--separable", "--nonneg",
                   "--sum", "1", "-o", str(path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "constraints: non-negative; sum 1; separable (rank 1)" in out
    fit, _ = read_fit(path)
    assert fit.constraints == {"nonneg": True, "sum": 1.0, "rank": 1}
    assert fit.kernel.sum() == pytest.approx(1.0, abs=1e-12) and fit.kernel.min() >= 0
    status = main(["fit", *blurred_files, "--size", "5", "--rank", "auto", "--symmetric",
                   "radial"])
    assert status == 2
    assert "--symmetric does not combine with --separable or --rank" in \
        capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--rank", "0"], "expected a positive integer or auto"),
    (["--rank", "7"], "--rank 7 is above the kernel's smaller side: a 5x5 kernel has rank at "
                      "most 5"),
    (["--separable", "--rank", "2"], "--separable is --rank 1"),
    (["--nonneg", "--method", "pinv"], "are fitted with --method lstsq"),
    (["--nonneg", "--sum", "-1"], "a non-negative kernel cannot sum to -1.0"),
])
def test_cli_refuses_bad_constraints_in_one_line(blurred_files, capsys, flags, words):
    from kernelfit._cli import main

    status = main(["fit", *blurred_files, "--size", "5", *flags])
    err = capsys.readouterr().err
    assert status == 2 and words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_constraints_on_dask_agree_with_memory(rng):
    da = pytest.importorskip("dask.array")
    x = rng.standard_normal((64, 60))
    y = kernelfit.convolve(x, kernels.gaussian(5, 1.2)) + NOISY * rng.standard_normal(x.shape)
    constraints = {"rank": 1, "nonneg": True, "sum": 1.0}
    here = kernelfit.fit_kernel(x, y, 5, constraints=constraints, method="lstsq-stats")
    lazy = kernelfit.fit_kernel(da.from_array(x, chunks=(20, 32)),
                                da.from_array(y, chunks=(20, 32)), 5,
                                constraints=constraints)
    np.testing.assert_allclose(lazy.kernel, here.kernel, atol=1e-12)
    np.testing.assert_allclose(lazy.stderr, here.stderr, rtol=1e-8)
    assert lazy.constraints == here.constraints


def test_symmetric_size_auto_searches_centred_supports(rng):
    """A kernel placed off-centre would be symmetric about the wrong centre: with a
    symmetry, size='auto' tries centred odd supports only."""
    x = rng.standard_normal((80, 80))
    y = kernelfit.convolve(x, kernels.gaussian(3, 0.8)) + 0.01 * rng.standard_normal(x.shape)
    fit = kernelfit.fit_kernel(x, y, "auto", constraints={"symmetry": "radial"})
    assert fit.size == (3, 3) and fit.origin == (0, 0)
    assert all(k % 2 == 1 for shape, _ in fit.size_scores for k in shape)
    np.testing.assert_allclose(fit.kernel, kernels.gaussian(3, 0.8), atol=1e-3)


def test_a_kernel_file_with_bad_constraints_says_so_in_its_own_words(tmp_path):
    import json

    from kernelfit._cli import _cli_words
    from kernelfit._io import FileError, read_fit

    path = tmp_path / "k.json"
    path.write_text(json.dumps({"format": "kernelfit-kernel", "format_version": 1,
                                "kernel": [[0, 1, 0]], "constraints": {"rank": "x"}}))
    with pytest.raises((ValueError, FileError)) as info:
        read_fit(path)
    message = _cli_words(str(info.value))
    assert "'constraints' holds what no fit has: ['rank'] must be" in message
    assert "--rank" not in message
