"""The one-pass pipeline: mergeable statistics, one operator, two passes over the pixels, and
the calls that used to crash or mislead."""

import warnings

import cv2
import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import kernelfit
from experiments._common import CountingArray
from kernelfit import _statistics, data, fit_kernel, kernels
from kernelfit._geometry import Box, Support, region
from kernelfit._operator import Operator
from kernelfit._prepare import prepare

LAYOUTS = ["none", "shared", "separate", "full", "grey"]
RULES = [None, "fill", "edge", "wrap", "symmetric", "reflect"]


def _problem(inputs, outputs, layout, **options):
    settings = dict(mode=None, boundary=None, fillvalue=0, convention="correlation",
                    origin=0, bias=False, channel_axis=None if layout == "none" else -1,
                    channels={"none": "shared", "grey": "shared"}.get(layout, layout),
                    mask=None, saturated="auto", method="lstsq", options=None, max_size=15,
                    checks=True)
    settings.update(options)
    return prepare(inputs, outputs, 3, **settings)


def _pairs(rng, ndim, n_pairs, layout, complex_, shapes=None):
    channels = 1 if layout == "none" else 3
    shapes = shapes or [tuple(int(rng.integers(6, {1: 40, 2: 14, 3: 7}[ndim]))
                              for _ in range(ndim)) for _ in range(n_pairs)]
    inputs, outputs = [], []
    for shape in shapes:
        full = shape + (() if layout == "none" else (channels,))
        x = rng.standard_normal(full)
        out = shape + {"none": (), "grey": (), "full": (2,)}.get(layout, (channels,))
        y = rng.standard_normal(out)
        if complex_:
            x, y = x + 1j * rng.standard_normal(full), y + 1j * rng.standard_normal(out)
        inputs.append(x)
        outputs.append(y)
    return inputs, outputs


def _close(a, b, rtol=1e-12):
    for name in ("gram", "rhs", "yy"):
        left, right = getattr(a, name), getattr(b, name)
        scale = max(np.abs(right).max(), 1e-300)
        assert np.abs(left - right).max() <= rtol * scale, name


@st.composite
def statistics_cases(draw):
    ndim = draw(st.integers(1, 3))
    return dict(ndim=ndim, n_pairs=draw(st.integers(1, 3)),
                layout=draw(st.sampled_from(LAYOUTS)), complex_=draw(st.booleans()),
                rule=draw(st.sampled_from(RULES)), masked=draw(st.sampled_from([0.0, 0.2, 0.8])),
                size=tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim))),
                tile=draw(st.integers(1, 400)), seed=draw(st.integers(0, 2**32 - 1)))


def _accumulated(problem, support, boxes):
    top, total, _, _ = _statistics.accumulate(problem, support, boxes, problem.pad_mode)
    return total


@given(statistics_cases())
def test_statistics_merge_over_any_tiling_and_split_of_pairs(case):
    rng = np.random.default_rng(case["seed"])
    inputs, outputs = _pairs(rng, case["ndim"], case["n_pairs"], case["layout"],
                             case["complex_"])
    masks = [rng.random(y.shape) >= case["masked"] for y in outputs]
    several = len(inputs) > 1
    problem = _problem(inputs if several else inputs[0], outputs if several else outputs[0],
                       case["layout"], mask=masks if several else masks[0],
                       boundary=case["rule"])
    support = Support(tuple(-(k // 2) for k in case["size"]), case["size"])
    boxes = [region(p.in_shape, support, "same", problem.pad_mode) for p in problem.pairs]
    if any(b.empty for b in boxes):
        return
    one_pass = _accumulated(problem, support, boxes)
    previous = _statistics.TILE_ELEMENTS
    _statistics.TILE_ELEMENTS = case["tile"]  # tiles of a few rows each
    try:
        tiled = _accumulated(problem, support, boxes)
    finally:
        _statistics.TILE_ELEMENTS = previous
    _close(tiled, one_pass)
    split = None  # every pair on its own, then merged
    for x, y, m, box in zip(inputs, outputs, masks, boxes):
        part = _accumulated(_problem(x, y, case["layout"], mask=m, boundary=case["rule"]),
                            support, [box])
        split = part if split is None else split + part
    _close(split, one_pass)


@given(statistics_cases())
def test_sub_block_statistics_equal_the_smaller_supports(case):
    rng = np.random.default_rng(case["seed"])
    inputs, outputs = _pairs(rng, case["ndim"], 1, case["layout"], case["complex_"],
                             shapes=[tuple(k + 6 for k in case["size"])])
    problem = _problem(inputs[0], outputs[0], case["layout"], boundary=case["rule"])
    big = Support(tuple(-(k // 2) for k in case["size"]), case["size"])
    boxes = [region(problem.pairs[0].in_shape, big, "same", problem.pad_mode)]
    whole = _accumulated(problem, big, boxes)
    shape = tuple(int(rng.integers(1, k + 1)) for k in case["size"])
    lo = tuple(int(rng.integers(a, a + k - s + 1)) for a, k, s in zip(big.lo, big.shape, shape))
    small = Support(lo, shape)
    _close(whole.restrict(small), _accumulated(problem, small, boxes))


@given(statistics_cases())
def test_fft_statistics_equal_the_windows_own(case):
    rng = np.random.default_rng(case["seed"])
    size = case["size"]
    inputs, outputs = _pairs(rng, case["ndim"], 1, case["layout"], case["complex_"],
                             shapes=[tuple(k + int(rng.integers(1, 9)) for k in size)])
    layout = {"none": "shared", "grey": "full"}.get(case["layout"], case["layout"])
    x = inputs[0] if inputs[0].ndim > case["ndim"] else inputs[0][..., np.newaxis]
    y = outputs[0] if outputs[0].ndim > case["ndim"] else outputs[0][..., np.newaxis]
    block = x[np.newaxis]
    target = y[(np.newaxis,) + tuple(slice(0, s - k + 1) for s, k in zip(x.shape, size))]
    usable = rng.random(target.shape) >= case["masked"]
    operator = Operator(size, layout, x.shape[-1], y.shape[-1])
    support = Support((0,) * len(size), size)
    joint = layout != "full" or bool((usable == usable[..., :1]).all())
    direct, spectral = (_statistics.zeros(support, layout, operator.n_in, operator.n_out,
                                          joint, np.result_type(block, target))
                        for _ in range(2))
    _statistics._direct(direct, operator.on(block), target, usable, layout)
    _statistics._spectral(spectral, operator.on(block), target, usable, layout)
    _close(spectral, direct, rtol=1e-11)


@given(st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_a_few_lags_by_the_pruned_inverse_equal_the_full_inverses(ndim, complex_, seed):
    """The pruned inverse DFT at a few indices (and the cached lags) equals the full inverse
    FFT there, whichever of the two the block chooses."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(rng.integers(4, 40 if ndim < 3 else 12)) for _ in range(ndim))
    block = rng.standard_normal((1,) + shape + (1,))
    if complex_:
        block = block + 1j * rng.standard_normal(block.shape)
    applied = Operator((3,) * ndim, "shared", 1, 1).on(block)
    spectrum = applied.spectra[0, ..., 0] * rng.standard_normal(applied.spectra.shape[1:-1])
    full = (np.fft.irfftn if not complex_ else np.fft.ifftn)(
        spectrum, s=applied.lengths, axes=tuple(range(ndim)))
    indices = [rng.integers(-n, 2 * n, size=int(rng.integers(1, 6))) for n in applied.lengths]
    expected = full[np.ix_(*(i % n for i, n in zip(indices, applied.lengths)))]
    scale = np.abs(full).max()
    assert np.abs(applied._pruned_inverse(spectrum, indices) - expected).max() <= 1e-12 * scale
    assert np.abs(applied.inverse_at(spectrum, indices) - expected).max() <= 1e-12 * scale
    lags = applied.lags("test", lambda: spectrum, indices)
    assert np.abs(lags - expected).max() <= 1e-12 * scale
    autocorrelation = np.zeros((5,) * ndim, dtype=block.dtype)
    for lag in np.ndindex(*autocorrelation.shape):
        shift = np.array(lag) - 2
        a = block[0, ..., 0][tuple(slice(max(0, -d), n - max(0, d)) for d, n in
                                   zip(shift, shape))]
        b = block[0, ..., 0][tuple(slice(max(0, d), n - max(0, -d)) for d, n in
                                   zip(shift, shape))]
        autocorrelation[lag] = np.vdot(a, b)
    found = applied.autocorrelation(0, 0)  # half by symmetry, cached
    np.testing.assert_allclose(found, autocorrelation, atol=1e-12 * np.abs(block).max() ** 2
                               * block.size)


@given(st.sampled_from(["shared", "separate", "full"]), st.integers(1, 3), st.booleans(),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_operator_adjoint_dot_test(layout, ndim, complex_, fft, seed):
    """<A k, r> = <k, A^H r> for every layout, direct and by FFT (as PyLops' dottest)."""
    rng = np.random.default_rng(seed)
    size = tuple(int(rng.integers(1, 4)) for _ in range(ndim))
    shape = tuple(k + int(rng.integers(0, 6 if ndim < 3 else 3)) for k in size)
    n_in = int(rng.integers(1, 4))
    n_out = n_in if layout != "full" else int(rng.integers(1, 4))
    block = rng.standard_normal((2,) + shape + (n_in,))
    operator = Operator(size, layout, n_in, n_out)
    kernel = rng.standard_normal(operator.kernel_shape)
    if complex_:
        block = block + 1j * rng.standard_normal(block.shape)
        kernel = kernel + 1j * rng.standard_normal(kernel.shape)
    applied = operator.on(block)
    if fft:
        applied.spectra  # forward and adjoint through the cached FFTs
        applied.use_fft = True
    else:
        applied.use_fft = False
    forward = applied.forward(kernel)
    residual = rng.standard_normal(forward.shape) + (
        1j * rng.standard_normal(forward.shape) if complex_ else 0)
    left = np.vdot(forward, residual)      # <A k, r>
    right = np.vdot(kernel, applied.adjoint(residual))  # <k, A^H r>
    assert abs(left - right) <= 1e-10 * max(abs(left), 1.0)


@pytest.mark.parametrize("layout", ["shared", "separate", "full", "grey"])
def test_convolve_and_predict_agree_for_every_channel_layout(rng, layout):
    image = rng.standard_normal((20, 18, 3))
    kernel = {"shared": kernels.box(3), "separate": rng.standard_normal((3, 3, 3)),
              "full": rng.standard_normal((3, 3, 3, 2)),
              "grey": rng.standard_normal((3, 3, 3))}[layout]
    channels = None if layout == "grey" else layout
    y = kernelfit.convolve(image, kernel, channel_axis=-1, channels=channels,
                           boundary="wrap")
    fit = fit_kernel(image, y, 3, channel_axis=-1,
                     channels="shared" if layout == "grey" else layout, boundary="wrap")
    np.testing.assert_allclose(fit.kernel, kernel, atol=1e-10)
    again = kernelfit.convolve(image, fit.kernel, channel_axis=-1, channels=fit.channels,
                               boundary="wrap")
    np.testing.assert_allclose(fit.predict(image), again, atol=1e-12)
    np.testing.assert_allclose(again, y, atol=1e-10)
    assert again.shape == y.shape


def test_separate_kernel_is_per_channel_not_summed(rng):
    image = rng.standard_normal((10, 9, 3))
    kernel = rng.standard_normal((3, 3, 3))
    separate = kernelfit.convolve(image, kernel, channel_axis=-1, channels="separate")
    summed = kernelfit.convolve(image, kernel, channel_axis=-1)
    assert separate.shape == (10, 9, 3) and summed.shape == (10, 9)
    np.testing.assert_allclose(separate.sum(axis=-1), summed, atol=1e-12)
    with pytest.raises(ValueError, match=r"channels='separate' needs a kernel "
                                         r"\(K1, ..., KD, C\)"):
        kernelfit.convolve(image, kernels.box(3), channel_axis=-1, channels="separate")
    with pytest.raises(ValueError, match=r"channels='full' needs a channel_axis"):
        kernelfit.convolve(image[..., 0], kernels.box(3), channels="full")


# --- passes over the pixels ----------------------------------------------------------------

@pytest.mark.parametrize("size,path", [(5, "lstsq-dense"), (9, "lstsq-stats")])
@pytest.mark.parametrize("kept", [True, False])
def test_one_pass_for_the_statistics_and_one_for_the_residual(monkeypatch, size, path, kept):
    photo = data.portrait().astype(float)
    y = kernelfit.convolve(photo, kernels.gaussian(size, 1.5), boundary="reflect")
    if not kept:  # no tiles kept in memory: the residual pass reads them again
        monkeypatch.setattr(_statistics, "CACHED_TILES", 0)
    x_counted, y_counted = CountingArray(photo), CountingArray(y)
    evidence, pieces = [], _statistics.evidence_pieces

    def recorded(*args):
        evidence.extend(pieces(*args))
        return tuple(evidence)

    monkeypatch.setattr(_statistics, "evidence_pieces", recorded)
    fit = fit_kernel(x_counted, y_counted, size)  # the default call: checks on
    assert fit.method == path
    np.testing.assert_allclose(fit.kernel, kernels.gaussian(size, 1.5), atol=1e-10)
    # one or two passes, plus the halos (K - 1 rows) where bands and frames meet, plus the
    # evidence's central box (200 samples per unknown: under a tenth of this image)
    passes = 1 if kept else 2
    extra = sum(box.size for _, box in evidence) / y.size
    assert len(evidence) == 1 and 0 < extra < 0.1
    assert passes - 0.1 < x_counted.read / photo.size < passes + 0.2 + extra
    assert passes - 0.2 < y_counted.read / y.size <= passes + extra


# --- dtypes: float32 data are fitted in float64 --------------------------------------------

FLOAT32_PHOTO = data.portrait()[100:356, 100:356].astype(np.float32)


@pytest.mark.parametrize("size", [5, 7])
def test_float32_through_scipy_gives_the_float64_answer(size):
    kernel = (kernels.gaussian(size, 1.2)
              + 0.1 * kernels.random((size, size), rng=1)).astype(np.float32)
    y = scipy.signal.convolve2d(FLOAT32_PHOTO, kernel, mode="same")
    assert y.dtype == np.float32
    fit = fit_kernel(FLOAT32_PHOTO, y, size)  # no warning: they are errors here
    cast = fit_kernel(FLOAT32_PHOTO.astype(np.float64), y.astype(np.float64), size)
    np.testing.assert_array_equal(fit.kernel, cast.kernel)
    assert fit.identifiable and fit.rank == size * size
    # within the float32 rounding of the data, amplified by the conditioning
    assert np.abs(fit.kernel - kernel).max() < 1e-7 * fit.condition_number


@pytest.mark.parametrize("size", [5, 7])
def test_float32_opencv_filter2d(size):
    kernel = (kernels.gaussian(size, 1.2)
              + 0.1 * kernels.random((size, size), rng=2)).astype(np.float32)
    y = cv2.filter2D(FLOAT32_PHOTO, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    assert y.dtype == np.float32
    fit = fit_kernel(FLOAT32_PHOTO, y, "auto", convention="correlation", boundary="auto")
    assert fit.size == (size, size) and fit.boundary == "reflect" and fit.identifiable
    assert np.abs(fit.kernel - kernel).max() < 1e-7 * fit.condition_number


# --- calls that used to crash or mislead ---------------------------------------------------

PHOTO = data.portrait()[150:350, 150:350].astype(float)


def test_boundary_auto_with_an_integer_size():
    y = kernelfit.convolve(PHOTO, kernels.gaussian(5, 1.0), boundary="edge")
    fit = fit_kernel(PHOTO, y, 5, boundary="auto")
    assert fit.boundary == "edge"
    np.testing.assert_allclose(fit.kernel, kernels.gaussian(5, 1.0), atol=1e-10)


def test_origin_auto_with_an_integer_size():
    y = kernelfit.convolve(PHOTO, kernels.sobel("x"), origin=(1, -1))
    fit = fit_kernel(PHOTO, y, 3, origin="auto")
    assert fit.origin == (1, -1) and fit.size_scores
    np.testing.assert_allclose(fit.kernel, kernels.sobel("x"), atol=1e-10)


def test_an_origin_with_size_auto_is_refused_not_ignored():
    with pytest.raises(ValueError, match=r"size='auto' finds the kernel's placement too: pass "
                                         r"origin=0 \(the default\) or origin='auto'"):
        fit_kernel(PHOTO, PHOTO, "auto", origin=(1, 0))


@pytest.mark.parametrize("taps", [15, 31, 63])
def test_origin_auto_finds_a_causal_fir(rng, taps):
    signal = rng.standard_normal(3000)
    fir = scipy.signal.firwin(taps, 0.3)
    y = scipy.signal.lfilter(fir, 1, signal)  # causal: zero history
    fit = fit_kernel(signal, y, taps, origin="auto")
    assert fit.origin == (-(taps // 2),)
    np.testing.assert_allclose(fit.kernel, fir, atol=1e-10)


@pytest.mark.parametrize("source", ["lfilter", "keras"])
def test_a_causal_filter_at_the_default_origin_warns_and_names_the_origin(rng, source):
    signal = rng.standard_normal(2000)
    fir = scipy.signal.firwin(15, 0.3)
    if source == "lfilter":
        y = scipy.signal.lfilter(fir, 1, signal)
    else:  # Keras Conv1D(padding="causal") correlates with the taps reversed
        y = kernelfit.correlate(signal, fir[::-1], origin=7)
    with pytest.warns(kernelfit.ModelWarning, match=r"the kernel is misplaced: at "
                                                    r"origin \(-7,\) a 15-tap kernel fits "
                                                    r"the output exactly, .* Pass "
                                                    r"origin=\(-7,\), or origin='auto'"):
        fit = fit_kernel(signal, y, 15)
    assert fit.r2 < 0.9  # what the warning is about


def test_a_too_small_size_warns_and_says_so():
    y = kernelfit.convolve(PHOTO, kernels.gaussian(7, 1.5))
    with pytest.warns(kernelfit.ModelWarning, match=r"the kernel is larger than size=3x3: "
                                                    r"a 5x5 support .* Pass a larger size"):
        fit_kernel(PHOTO, y, 3)


def test_no_warning_for_a_right_fit_on_8_bit_data():
    y = kernelfit.synth.synthesize(PHOTO, kernels.unsharp_mask(1.0, 0.6, size=5),
                                   dtype=np.uint8)
    fit_kernel(PHOTO, y, 5)  # warnings are errors here
    fit_kernel(PHOTO, y, 5, bias=True)


def test_estimate_is_immutable(rng):
    x = rng.standard_normal((16, 16))
    fit = fit_kernel(x, kernelfit.convolve(x, kernels.box(3)), 3)
    assert fit.kernel.flags.writeable is False and fit.stderr.flags.writeable is False


def test_no_warning_filter_is_installed_by_a_fit(rng):
    x = rng.standard_normal((30, 30))
    before = list(warnings.filters)
    fit_kernel(x, kernelfit.convolve(x, kernels.box(3)), "auto", boundary="auto")
    assert warnings.filters == before


@pytest.mark.parametrize("m", [60, 500])
def test_an_ill_conditioned_full_rank_system_stays_full_rank(m):
    """Near the rank tolerance the exact extremes decide (from the inverse): a system above
    it is solved by Cholesky, with the eigenvalues eigvalsh finds."""
    from kernelfit._solve import Factorization
    rng = np.random.default_rng(m)
    basis, _ = np.linalg.qr(rng.standard_normal((m, m)))
    values = np.logspace(0, 9, m)  # condition number 1e9: not 'clearly' full rank
    gram = (basis * values) @ basis.T
    factor = Factorization(gram, m, 10**6, bias=False)
    assert factor.full_rank and factor.rank == m
    expected = np.linalg.eigvalsh(gram)
    np.testing.assert_allclose(factor.singular_extremes() ** 2, expected[[-1, 0]], rtol=1e-6)
    np.testing.assert_allclose(factor.solve_centred(gram @ np.ones(m)), np.ones(m),
                               rtol=1e-5)
    np.testing.assert_allclose(factor.inverse_diagonal(), np.diag(np.linalg.inv(gram)),
                               rtol=1e-6)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_the_evidence_is_a_central_box_of_enough_samples(ndim, n_pairs, seed):
    """The evidence's samples: a box at the centre of each pair's samples in turn, inside
    them by the evidence's extra taps, until they number EVIDENCE_SAMPLES per unknown (or
    all there are); its statistics are those of its windows there."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(int(rng.integers(8, {1: 3000, 2: 60, 3: 16}[ndim])) for _ in range(ndim))
              for _ in range(n_pairs)]
    inputs = [rng.standard_normal(shape) for shape in shapes]
    outputs = [rng.standard_normal(shape) for shape in shapes]
    problem = _problem(inputs if n_pairs > 1 else inputs[0],
                       outputs if n_pairs > 1 else outputs[0], "none")
    support = Support((-1,) * ndim, (3,) * ndim)
    evidence = Support((-2,) * ndim, (5,) * ndim)
    boxes = [region(p.in_shape, support, "valid", None) for p in problem.pairs]
    pieces = _statistics.evidence_pieces(problem, support, evidence, boxes)
    wanted = _statistics.EVIDENCE_SAMPLES * (evidence.size + 1)
    inner = [Box(tuple(a + 1 for a in box.start), tuple(b - 1 for b in box.stop))
             for box in boxes]
    got = sum(box.size for _, box in pieces)
    assert got >= min(wanted, sum(box.size for box in inner))
    for i, (pair, box) in enumerate(pieces):
        assert pair is problem.pairs[i] and inner[i].contains(box)
        for a, b, lo, hi in zip(box.start, box.stop, inner[i].start, inner[i].stop):
            assert abs((a - lo) - (hi - b)) <= 1  # centred
        if i < len(pieces) - 1:
            assert box == inner[i]  # a pair is taken whole before the next is begun
    assert got - pieces[-1][1].size < wanted  # no pair more than needed
    stats = _statistics.evidence_statistics(problem, evidence, pieces, None)
    direct = _statistics.zeros(evidence, "shared", 1, 1, True, np.float64)
    for pair, box in pieces:
        block = pair.block(evidence, box, None, 0, np.float64)
        _statistics._direct(direct, Operator(evidence.shape, "shared", 1, 1).on(
            block.extended), block.target, block.usable, "shared")
    _close(stats, direct, rtol=1e-11)


def test_kept_tiles_without_their_blocks_are_read_again_for_dense_rows(monkeypatch):
    photo = data.portrait()[:160, :200].astype(float)
    y = kernelfit.convolve(photo, kernels.gaussian(7, 1.2), boundary="reflect")
    kept = fit_kernel(photo, y, 7, method="lstsq-dense")
    monkeypatch.setattr(_statistics, "KEPT_BLOCKS", 0)  # keep only the tiles' transforms
    counted = CountingArray(photo)
    again = fit_kernel(counted, y, 7, method="lstsq-dense")
    assert counted.read > 1.9 * photo.size  # the rows come from reading the blocks again
    np.testing.assert_allclose(again.kernel, kept.kernel, atol=1e-13)
    np.testing.assert_allclose(again.kernel, kernels.gaussian(7, 1.2), atol=1e-10)


@pytest.mark.parametrize("layout", ["none", "separate", "full"])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("related", [False, True])
def test_half_fits_by_preconditioned_cg_equal_their_own_factorisation(monkeypatch, layout,
                                                                      complex_, related):
    """The checks' fits on half of the rows, by conjugate gradients started from the
    pooled solution and preconditioned with its factor, equal direct least squares."""
    from kernelfit import _search
    rng = np.random.default_rng(7)
    inputs, outputs = _pairs(rng, 2, 1, layout, complex_, shapes=[(40, 30)])
    if related:  # the pooled solution is then nearly every half's: a warm start
        outputs = [0.01 * y + kernelfit.convolve(x.reshape(40, 30, -1)[..., 0],
                                                 np.ones((3, 3))).reshape(
            (40, 30) + (1,) * (y.ndim - 2)) for x, y in zip(inputs, outputs)]
    problem = _problem(inputs[0], outputs[0], layout, bias=True)
    support = Support((-1, -1), (3, 3))
    boxes = [region(problem.pairs[0].in_shape, support, "same", problem.pad_mode)]
    top, total, _, _ = _statistics.accumulate(problem, support, boxes, problem.pad_mode)
    pooled = _search.SubFit(problem, total, support)
    direct = _search.SubFit(problem, top, support)
    monkeypatch.setattr(_search, "PRECONDITIONED_UNKNOWNS", 0)
    iterated = _search.SubFit(problem, top, support, like=pooled)
    assert all(isinstance(f, _search.Preconditioned) for f in iterated.factors)
    for (x, b), (x0, b0) in zip(iterated.solutions, direct.solutions):
        np.testing.assert_allclose(x, x0, rtol=1e-8, atol=1e-10 * np.abs(x0).max())
        np.testing.assert_allclose(b, b0, rtol=1e-8, atol=1e-10 * np.abs(b0).max())
    np.testing.assert_allclose(iterated.rss, direct.rss, rtol=1e-8)


@pytest.mark.parametrize("unknowns", [0, 1024])
def test_shift_variance_warns_with_either_solver_of_the_halves(monkeypatch, unknowns):
    from kernelfit import _search
    monkeypatch.setattr(_search, "PRECONDITIONED_UNKNOWNS", unknowns)
    image = data.portrait()[:200, :200].astype(float)
    top = kernelfit.convolve(image, kernels.gaussian(5, 0.8))
    bottom = kernelfit.convolve(image, kernels.gaussian(5, 1.6))
    varying = np.where(np.arange(200)[:, None] < 100, top, bottom)
    with pytest.warns(kernelfit.ModelWarning, match=r"not shift-invariant"):
        fit_kernel(image, varying, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_kernel(image, top + np.random.default_rng(0).normal(0, 0.5, top.shape), 5)


def test_restricted_statistics_own_their_arrays():
    """Adding into a sub-block's statistics (the frames of a design) must not change the
    statistics it came from (the first pass's, which every later check reads)."""
    rng = np.random.default_rng(0)
    whole = _statistics.zeros(Support((-2, -2), (5, 5)), "shared", 1, 1, True, np.float64)
    for array in (whole.gram, whole.rhs, whole.yy):
        array[...] = rng.standard_normal(array.shape)
    before = [a.copy() for a in (whole.gram, whole.rhs, whole.yy)]
    part = whole.restrict(Support((-1, -1), (3, 3)))
    part.add(part)
    for a, b in zip((whole.gram, whole.rhs, whole.yy), before):
        np.testing.assert_array_equal(a, b)
