"""Dask arrays: the same fit as in memory, whatever the chunks, the scheduler or the workers.

Most tests run on the synchronous scheduler (deterministic, easy to debug); a few on one
LocalCluster of two worker processes shared by the module.
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernelfit
from kernelfit import _statistics
from kernelfit._prepare import prepare
from kernelfit._search import plan
from kernelfit._statistics import first_pass

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

RTOL = 1e-12


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(autouse=True)
def scheduler(request):
    """The synchronous scheduler, except for the tests that ask for the cluster."""
    if "client" in request.fixturenames:
        with dask.config.set(scheduler="dask.distributed"):
            yield
    else:
        with dask.config.set(scheduler="synchronous"):
            yield


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    assert float(np.max(np.abs(a - b), initial=0.0)) <= rtol * scale, (a, b)


def same_fit(fit, reference):
    assert fit.size == reference.size and fit.origin == reference.origin
    assert fit.boundary == reference.boundary and fit.n_equations == reference.n_equations
    close(fit.kernel, reference.kernel)
    # (standard errors of an exact fit are rounding: compared on the kernel's scale)
    assert np.max(np.abs(fit.stderr - reference.stderr)) <= 1e-9 * np.max(
        reference.stderr) + RTOL * np.max(np.abs(reference.kernel))
    assert fit.residual_rms == pytest.approx(reference.residual_rms, rel=1e-9, abs=1e-14)
    if reference.bias is not None:
        close(fit.bias, reference.bias, 1e-10)


def lazy(array, chunks):
    return None if array is None else da.from_array(array, chunks=chunks)


def blurred(rng, shape=(48, 40), kernel_shape=(3, 3), noise=0.01, channels=None,
            boundary="fill", kernel=None):
    x = rng.standard_normal(shape if channels is None else shape + (channels,))
    k = rng.standard_normal(kernel_shape) if kernel is None else kernel
    axis = None if channels is None else -1
    y = kernelfit.convolve(x, k, channel_axis=axis, boundary=boundary) \
        + noise * rng.standard_normal(x.shape)
    return x, y


# --- the same fit ---------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    {}, {"size": "auto"}, {"boundary": "auto"}, {"origin": "auto"}, {"bias": True},
    {"boundary": "reflect"}, {"mode": "valid"}, {"size": (2, 4), "boundary": "wrap"},
])
def test_agrees_with_the_in_memory_fit(rng, options):
    options = dict(options)
    size = options.pop("size", 3)
    x, y = blurred(rng, kernel_shape=(3, 3) if size in (3, "auto") else size,
                   boundary=options.get("boundary") if options.get("boundary") in (
                       "reflect", "wrap") else "fill")
    if options.get("mode") == "valid":
        y = y[1:-1, 1:-1]
    reference = kernelfit.fit_kernel(x, y, size, **options)
    fit = kernelfit.fit_kernel(lazy(x, (17, 23)), lazy(y, (13, 40)), size, **options)
    same_fit(fit, reference)
    assert fit.method == "lstsq-stats"  # the patch matrix is never gathered on the client
    assert fit.size_scores == pytest.approx(reference.size_scores, rel=1e-9) \
        if reference.size_scores else fit.size_scores == reference.size_scores


def test_many_tiles_and_a_larger_kernel(rng, monkeypatch):
    # a small tile budget: many tiles in both bands, and the FFT path for a 7x7 kernel
    monkeypatch.setattr("kernelfit._statistics.TILE_ELEMENTS", 2000)
    x, y = blurred(rng, (90, 70), (7, 7))
    reference = kernelfit.fit_kernel(x, y, 7, method="lstsq-stats")
    fit = kernelfit.fit_kernel(lazy(x, (20, 70)), lazy(y, (33, 16)), 7)
    same_fit(fit, reference)
    fit = kernelfit.fit_kernel(lazy(x, 64), lazy(y, 64), "auto", max_size=9)
    same_fit(fit, kernelfit.fit_kernel(x, y, "auto", max_size=9, method="lstsq-stats"))


@pytest.mark.parametrize("channels", ["shared", "separate", "full"])
def test_channel_layouts(rng, channels):
    x, y = blurred(rng, (30, 26), channels=3)
    if channels == "full":
        y = y + 0.3 * np.roll(y, 1, axis=-1)
    reference = kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels=channels, bias=True)
    fit = kernelfit.fit_kernel(lazy(x, (11, 26, 3)), lazy(y, (30, 9, 1)), 3, channel_axis=-1,
                               channels=channels, bias=True)
    same_fit(fit, reference)


def test_a_grey_output_with_the_channels_first(rng):
    x = rng.standard_normal((3, 28, 24))
    y = kernelfit.convolve(x, rng.standard_normal((3, 3, 3)), channel_axis=0) \
        + 0.01 * rng.standard_normal((28, 24))
    reference = kernelfit.fit_kernel(x, y, 3, channel_axis=0)
    fit = kernelfit.fit_kernel(lazy(x, (1, 10, 24)), lazy(y, (13, 13)), 3, channel_axis=0)
    same_fit(fit, reference)


def test_several_pairs_with_masks(rng):
    kernel = rng.standard_normal((3, 3))
    pairs = [blurred(rng, shape, kernel=kernel) for shape in ((30, 30), (30, 30), (24, 40))]
    masks = [rng.random(y.shape) > 0.2 for _, y in pairs]
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    for y, m in zip(ys, masks):
        y[~m] = np.nan  # masked samples may hold NaN
    reference = kernelfit.fit_kernel(xs, ys, 3, mask=masks)
    fit = kernelfit.fit_kernel([lazy(x, 16) for x in xs], [lazy(y, 11) for y in ys], 3,
                               mask=[lazy(m, 7) for m in masks])  # the masks' own chunks
    same_fit(fit, reference)
    # numpy and dask pairs mixed, and a numpy mask for a dask output
    fit = kernelfit.fit_kernel([xs[0], lazy(xs[1], 8), xs[2]], [lazy(ys[0], 30), ys[1],
                                                                 lazy(ys[2], 5)], 3, mask=masks)
    same_fit(fit, reference)


def test_many_small_pairs_are_batched(rng):
    x, y = blurred(rng, (16 * 60, 16))
    xs, ys = np.split(x, 60), np.split(y, 60)
    calls = []
    reference = kernelfit.fit_kernel(xs, ys, 3, method="lstsq-stats")
    fit = kernelfit.fit_kernel([lazy(a, 16) for a in xs], [lazy(b, 8) for b in ys], 3,
                               progress=lambda *report: calls.append(report))
    same_fit(fit, reference)
    statistics = [done for stage, done, total in calls if stage == "statistics"]
    # 120 tiles (two bands of 60 pairs), stacked into a task per band
    assert statistics[-1] == 120 and len(statistics) == 3


def test_complex_1d_3d_and_integer_data(rng):
    x = rng.standard_normal((30, 26)) + 1j * rng.standard_normal((30, 26))
    y = kernelfit.convolve(x, rng.standard_normal((3, 3)) + 1j) + 0.01 * x.real
    same_fit(kernelfit.fit_kernel(lazy(x, 8), lazy(y, 11), 3),
             kernelfit.fit_kernel(x, y, 3, method="lstsq-stats"))
    signal = rng.standard_normal(500)
    causal = np.convolve(signal, [0.5, 0.3, 0.2])[:500] + 0.01 * rng.standard_normal(500)
    same_fit(kernelfit.fit_kernel(lazy(signal, 77), lazy(causal, 50), 3, origin="auto"),
             kernelfit.fit_kernel(signal, causal, 3, origin="auto"))
    volume, filtered = blurred(rng, (12, 14, 10), (3, 3, 3))
    same_fit(kernelfit.fit_kernel(lazy(volume, 5), lazy(filtered, 6), 3),
             kernelfit.fit_kernel(volume, filtered, 3, method="lstsq-stats"))
    image = rng.integers(0, 256, (40, 36)).astype(np.uint8)
    sharpened = np.clip(np.round(kernelfit.convolve(image.astype(float), np.array(
        [[0, -0.5, 0], [-0.5, 3, -0.5], [0, -0.5, 0]]))), 0, 255).astype(np.uint8)
    for saturated in ("auto", True):
        same_fit(kernelfit.fit_kernel(lazy(image, 16), lazy(sharpened, 12), 3,
                                      saturated=saturated),
                 kernelfit.fit_kernel(image, sharpened, 3, saturated=saturated,
                                      method="lstsq-stats"))


def test_methods_that_build_the_patch_matrix_still_work(rng):
    x, y = blurred(rng)
    for method, options in (("pinv", None), ("ridge", {"reg": 0.1})):
        fit = kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, method=method,
                                   options=options)
        same_fit(fit, kernelfit.fit_kernel(x, y, 3, method=method, options=options))
        assert fit.method == method


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_in_memory_statistics(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shape = (data.draw(st.integers(8, 30)), data.draw(st.integers(8, 30)))
    size = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    mask = rng.random(shape) > 0.3 if data.draw(st.booleans()) else None

    def chunks():
        return tuple(data.draw(st.integers(1, n)) for n in shape)

    boundary = data.draw(st.sampled_from([None, "wrap", "symmetric"]))
    x, y = blurred(rng, shape, size, boundary=boundary or "fill")
    options = dict(mode=None, boundary=boundary, fillvalue=0, convention="convolution",
                   origin=0, bias=True, channel_axis=None, channels="shared",
                   saturated="auto", method="lstsq", options=None, max_size=15, checks=True)
    memory = prepare(x, y, size, mask=mask, **options)
    lazy_problem = prepare(lazy(x, chunks()), lazy(y, chunks()), size,
                           mask=lazy(mask, chunks()), **options)
    assert lazy_problem.dask and not memory.dask
    expected = first_pass(memory, *plan(memory))
    found = first_pass(lazy_problem, *plan(lazy_problem))
    for mine, theirs in ((found.top, expected.top), (found.total, expected.total)):
        for name in ("gram", "rhs", "yy"):
            close(getattr(mine, name), getattr(theirs, name))
    with dask.config.set(scheduler="synchronous"):
        fit = kernelfit.fit_kernel(lazy(x, chunks()), lazy(y, chunks()), size, mask=mask,
                                   boundary=boundary, bias=True)
    close(fit.kernel, kernelfit.fit_kernel(x, y, size, mask=mask, boundary=boundary,
                                           bias=True, method="lstsq-stats").kernel)


# --- bad input ------------------------------------------------------------------------------

def test_chunks_of_input_and_output_need_not_agree(rng):
    x, y = blurred(rng)
    reference = kernelfit.fit_kernel(x, y, 3)
    for chunks_x, chunks_y in (((48, 40), (5, 7)), ((7, 40), (48, 3)), (9, 31)):
        same_fit(kernelfit.fit_kernel(lazy(x, chunks_x), lazy(y, chunks_y), 3), reference)


def test_nan_in_one_chunk_names_where(rng):
    x, y = blurred(rng)
    saved, x[37, 11] = x[37, 11], np.nan
    with pytest.raises(ValueError, match="^input contains NaN or infinite values") as memory:
        kernelfit.fit_kernel(x, y, 3)
    with pytest.raises(ValueError, match=r"the first at index \(37, 11\), in dask chunk "
                                         r"\(2, 1\)") as found:
        kernelfit.fit_kernel(lazy(x, (16, 10)), lazy(y, 8), 3)
    assert str(found.value).startswith(str(memory.value))
    x[37, 11] = saved
    clean = y.copy()
    y[20, 5] = np.inf
    with pytest.raises(ValueError, match=r"^output\[1\] contains NaN .*mask=\): the first "
                                         r"at index \(20, 5\), in dask chunk \(2, 0\)"):
        kernelfit.fit_kernel([lazy(x, 16), lazy(x, 16)], [lazy(clean, 16), lazy(y, 8)], 3)
    mask = np.ones(y.shape, bool)
    mask[20, 5] = False  # a masked sample may hold anything
    fit = kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, mask=lazy(mask, 12))
    y[20, 5] = 0  # (in memory too)
    same_fit(fit, kernelfit.fit_kernel(x, y, 3, mask=mask))


@pytest.mark.parametrize("shapes", [((20, 20), (20, 21)), ((20, 20), (20,)),
                                    ((20, 20), (21, 21))])
def test_shapes_that_disagree_are_the_same_errors(rng, shapes):
    x, y = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    with pytest.raises(ValueError) as memory:
        kernelfit.fit_kernel(x, y, 3, mode="same")
    with pytest.raises(ValueError) as found:
        kernelfit.fit_kernel(lazy(x, 7), lazy(y, 7), 3, mode="same")
    assert str(found.value) == str(memory.value)


def test_a_mask_of_the_wrong_shape_or_dtype(rng):
    x, y = blurred(rng)
    with pytest.raises(ValueError, match="mask has shape"):
        kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, mask=da.ones((48, 41), dtype=bool))
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, mask=da.ones((48, 40)))


# --- progress -------------------------------------------------------------------------------

def test_a_callback_sees_every_tile(rng):
    x, y = blurred(rng)
    calls = []
    kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, progress=lambda *c: calls.append(c))
    stages = {stage: (done, total) for stage, done, total in calls}
    assert stages == {"statistics": (2, 2), "residual": (2, 2)}


def test_a_bar_is_dasks(rng, capsys):
    x, y = blurred(rng)
    kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, progress=True)
    captured = capsys.readouterr()
    assert "Completed" in captured.err and captured.out == ""


# --- a cluster ------------------------------------------------------------------------------

def test_on_a_cluster_the_fit_is_the_same(rng, client):
    x, y = blurred(rng, (64, 48))
    reference = kernelfit.fit_kernel(x, y, 5, bias=True)
    for chunks in ((64, 48), (10, 48), (16, 7)):
        fit = kernelfit.fit_kernel(lazy(x, chunks), lazy(y, (32, 24)), 5, bias=True)
        same_fit(fit, reference)
    fit = kernelfit.fit_kernel(lazy(x, 20), lazy(y, 20), "auto", boundary="auto")
    same_fit(fit, kernelfit.fit_kernel(x, y, "auto", boundary="auto"))


def test_on_a_cluster_the_sums_do_not_depend_on_scheduling(rng, client, monkeypatch):
    # many small tiles (here and on the workers): 74 tasks a pass, three levels of merges
    def tile_budget(elements):
        import kernelfit._statistics
        kernelfit._statistics.TILE_ELEMENTS = elements

    default = _statistics.TILE_ELEMENTS
    monkeypatch.setattr("kernelfit._statistics.TILE_ELEMENTS", 400)
    client.run(tile_budget, 400)
    try:
        x, y = blurred(rng, (150, 60), (5, 5))
        calls = []
        with dask.config.set(scheduler="synchronous"):
            reference = kernelfit.fit_kernel(lazy(x, 40), lazy(y, (20, 60)), 5, bias=True,
                                             progress=lambda *c: calls.append(c))
        assert calls[-1] == ("residual", 74, 74)
        # (the output's chunks decide the tiles: the input's may be anything)
        for chunks in ((150, 60), (7, 60), (33, 13)):
            fit = kernelfit.fit_kernel(lazy(x, chunks), lazy(y, (20, 60)), 5, bias=True)
            assert np.array_equal(fit.kernel, reference.kernel)  # to the last bit
            assert fit.residual_rms == reference.residual_rms
        same_fit(fit, kernelfit.fit_kernel(x, y, 5, bias=True, method="lstsq-stats"))
    finally:
        client.run(tile_budget, default)


def test_on_a_cluster_a_zarr_pair(rng, client, tmp_path):
    pytest.importorskip("zarr")
    x, y = blurred(rng, (64, 64))
    lazy(x, 16).to_zarr(str(tmp_path / "input.zarr"))
    lazy(y, 32).to_zarr(str(tmp_path / "output.zarr"))
    fit = kernelfit.fit_kernel(da.from_zarr(str(tmp_path / "input.zarr")),
                               da.from_zarr(str(tmp_path / "output.zarr")), 3)
    same_fit(fit, kernelfit.fit_kernel(x, y, 3))


def test_on_a_cluster_errors_and_progress_reach_the_client(rng, client, capsys):
    x, y = blurred(rng)
    calls = []
    kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, progress=lambda *c: calls.append(c))
    assert calls[-1] == ("residual", 2, 2)
    kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3, progress=True)
    assert "100%" in capsys.readouterr().out
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"the first at index \(3, 4\), in dask chunk"):
        kernelfit.fit_kernel(lazy(x, 16), lazy(y, 16), 3)


def test_on_a_cluster_a_worker_that_dies_changes_nothing(rng, client, tmp_path):
    x, y = blurred(rng)
    marker = str(tmp_path / "died")
    here = os.getpid()

    def die_once(block):
        # the first worker to read a chunk dies (os._exit, as if killed); the nanny starts
        # another and the scheduler runs its tasks again
        if os.getpid() != here and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return block

    fragile = lazy(x, 16).map_blocks(die_once, meta=np.array((), dtype=x.dtype))
    fit = kernelfit.fit_kernel(fragile, lazy(y, 16), 3)
    assert os.path.exists(marker)
    same_fit(fit, kernelfit.fit_kernel(x, y, 3))
    client.wait_for_workers(2)


# --- tiles of an output stored in chunks --------------------------------------------------

def test_wide_chunks_cut_the_tiles_so_each_reads_a_few_chunks(rng, monkeypatch):
    """Where the output's chunks are wider than a tile's share of an axis, tiles are cut
    where they begin (whole chunks grouped up to the share), rather than spanning whole
    rows of chunks; the kernel is the in-memory one."""
    from kernelfit._geometry import Box

    monkeypatch.setattr(_statistics, "TILE_ELEMENTS", 4096)  # a share of 64 per axis
    grid = ((100, 200), (30, 60, 90, 130, 200))
    parts = _statistics._groups(Box((0, 5), (256, 250)), grid)
    assert [(p.start[1], p.stop[1]) for p in parts] == [(5, 60), (60, 90), (90, 130),
                                                        (130, 200), (200, 250)]
    assert all(p.start[0] == 0 and p.stop[0] == 256 for p in parts)
    assert _statistics._groups(Box((0, 0), (10, 64)), grid) == [Box((0, 0), (10, 64))]
    x, y = blurred(rng, (256, 256), (5, 5))
    lazy_y = lazy(y, (64, 100))
    problem = prepare(lazy(x, 50), lazy_y, 5, mode=None, boundary=None, fillvalue=0,
                      convention="correlation", origin=0, bias=False, channel_axis=None,
                      channels="shared", mask=None, saturated="auto", method="lstsq",
                      options=None, max_size=15, checks=True)
    assert problem.pairs[0].grid == ((64, 128, 192), (100, 200))
    support = kernelfit._geometry.Support((-2, -2), (5, 5))
    boxes = [kernelfit._geometry.region((256, 256), support, "same", None)]
    for _, _, box in _statistics.tiles(problem, support, boxes):
        assert box.start[1] // 100 == (box.stop[1] - 1) // 100  # within one chunk column
    same_fit(kernelfit.fit_kernel(lazy(x, 50), lazy_y, 5), kernelfit.fit_kernel(x, y, 5))
