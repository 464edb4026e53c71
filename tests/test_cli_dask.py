"""The command line on inputs read in chunks: zarr stores, TIFFs and .npy files with
--dask, a cluster with --scheduler; the same kernel as the in-memory fit."""

import gc
import json

import numpy as np
import pytest

import kernelfit
from kernelfit import _cli, data, kernels
from kernelfit._cli import main

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("dask.array")

KERNEL = kernels.gaussian(5, 1.0)


@pytest.fixture(scope="module")
def arrays():
    """A crop of the portrait (float32) and its 5x5 Gaussian blur (float32, mirrored edge)."""
    image = data.portrait()[100:300, 80:330].astype(np.float32)
    output = kernelfit.convolve(image.astype(float), KERNEL, boundary="symmetric")
    return image, output.astype(np.float32)


@pytest.fixture(scope="module")
def reference(arrays):
    return kernelfit.fit_kernel(*arrays, 5, boundary="auto")


def write_zarr(path, array, chunks):
    store = zarr.open_array(str(path), mode="w", shape=array.shape, chunks=chunks,
                            dtype=array.dtype)
    store[:] = array
    return str(path)


def fit_file(capsys, tmp_path, *argv):
    kernel_file = tmp_path / "k.json"
    status = main([str(a) for a in argv] + ["-o", str(kernel_file)])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(kernel_file.read_text()), out, err


def test_zarr_stores_are_read_in_chunks_and_give_the_in_memory_kernel(arrays, reference,
                                                                       tmp_path, capsys):
    image, output = arrays
    paths = (write_zarr(tmp_path / "in.zarr", image, (64, 64)),
             write_zarr(tmp_path / "out.zarr", output, (50, 100)))  # other chunks
    content, out, _ = fit_file(capsys, tmp_path, "fit", *paths, "--size", "5")
    np.testing.assert_allclose(content["kernel"], reference.kernel, rtol=0, atol=1e-12)
    assert content["boundary"] == "symmetric"
    assert "in.zarr (200x250 grey float32)" in out and "identified: Gaussian blur" in out


@pytest.mark.parametrize("kind", ["tiff", "npy"])
def test_tiff_and_npy_with_dask_give_the_in_memory_kernel(arrays, reference, tmp_path,
                                                           capsys, kind):
    image, output = arrays
    paths = []
    for name, array in (("in", image), ("out", output)):
        if kind == "tiff":
            path = tmp_path / f"{name}.tif"
            tifffile.imwrite(path, array, tile=(64, 64))  # read tile by tile
        else:
            path = tmp_path / f"{name}.npy"
            np.save(path, array)
        paths.append(path)
    content, _, err = fit_file(capsys, tmp_path, "fit", *paths, "--size", "5", "--dask")
    gc.collect()  # (a TIFF left open would warn here, as unraisable: an error in this suite)
    assert "decoded whole" not in err
    np.testing.assert_allclose(content["kernel"], reference.kernel, rtol=0, atol=1e-12)


def test_a_png_with_dask_is_decoded_whole_with_a_note(tmp_path, capsys):
    from PIL import Image

    image = data.portrait()[:120, :100]
    output = kernelfit.convolve(image.astype(float), KERNEL, boundary="symmetric")
    Image.fromarray(image).save(tmp_path / "in.png")
    np.save(tmp_path / "out.npy", output)
    content, out, _ = fit_file(capsys, tmp_path, "fit", tmp_path / "in.png",
                               tmp_path / "out.npy", "--size", "5", "--dask")
    assert "in.png: a .png file cannot be read in parts; decoded whole" in out
    np.testing.assert_allclose(content["kernel"], KERNEL, atol=1e-10)


def test_colour_zarr_with_a_lazy_mask(tmp_path, capsys):
    rgb = data.portrait(color=True)[:120, :140].astype(np.float32)
    output = kernelfit.convolve(rgb.astype(float), KERNEL, boundary="symmetric",
                                channel_axis=-1, channels="shared").astype(np.float32)
    mask = np.ones(output.shape[:2], np.uint8)
    mask[:20] = 0  # the top rows are not used
    output[:10] = 1e6  # (garbage there)
    paths = (write_zarr(tmp_path / "in.zarr", rgb, (40, 40, 3)),
             write_zarr(tmp_path / "out.zarr", output, (60, 70, 3)),
             write_zarr(tmp_path / "mask.zarr", mask, (30, 30)))
    content, _, _ = fit_file(capsys, tmp_path, "fit", paths[0], paths[1], "--mask",
                             paths[2], "--size", "5", "--boundary", "symmetric")
    assert content["channels"] == "shared"
    np.testing.assert_allclose(content["kernel"], KERNEL, atol=1e-6)


def test_a_plot_of_a_large_lazy_input_shows_its_centre(arrays, tmp_path, capsys,
                                                         monkeypatch):
    image, output = arrays
    monkeypatch.setattr(_cli, "PLOT_CROP", 64)
    cropped, target, words = _cli._centre_crop(image, output, 64)
    assert cropped.shape == target.shape == (64, 64) and words == " (centre 64x64)"
    np.testing.assert_array_equal(cropped, image[68:132, 93:157])
    paths = (write_zarr(tmp_path / "in.zarr", image, (64, 64)),
             write_zarr(tmp_path / "out.zarr", output, (64, 64)))
    plot = tmp_path / "fit.png"
    fit_file(capsys, tmp_path, "fit", *paths, "--size", "5", "--plot", plot)
    assert plot.stat().st_size > 0


@pytest.mark.parametrize("argv, words", [
    (["missing.zarr", "out.zarr"], "missing.zarr: no such zarr store"),
    (["file.zarr", "out.zarr"], "file.zarr: not a zarr array (a folder with zarr.json"),
    (["folder.zarr", "out.zarr"], "folder.zarr: not a zarr array"),
    (["text.zarr", "out.zarr"], "text.zarr: an image must be real numbers"),
    (["in.zarr", "out.zarr", "--scheduler", "tcp://127.0.0.1:1"],
     "--scheduler tcp://127.0.0.1:1: cannot connect"),
])
def test_lazy_input_errors_are_one_line(arrays, tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_cli, "SCHEDULER_TIMEOUT", "1s")
    write_zarr("in.zarr", arrays[0], (64, 64))
    write_zarr("out.zarr", arrays[1], (64, 64))
    write_zarr("text.zarr", np.array([1 + 2j, 3j]), (2,))
    (tmp_path / "file.zarr").write_text("not a store")
    (tmp_path / "folder.zarr").mkdir()
    status = main(["fit", *argv, "--size", "5"])
    _, err = capsys.readouterr()
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_fit_on_a_cluster_by_its_scheduler_address(arrays, reference, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    image, output = arrays
    paths = (write_zarr(tmp_path / "in.zarr", image, (64, 64)),
             write_zarr(tmp_path / "out.zarr", output, (64, 64)))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        content, _, _ = fit_file(capsys, tmp_path, "fit", *paths, "--size", "5",
                                 "--scheduler", cluster.scheduler_address)
    np.testing.assert_allclose(content["kernel"], reference.kernel, rtol=0, atol=1e-12)
