"""JPEG outputs: the residual's 8x8 block grid is found and named, and size='auto' keeps the
smallest kernel that fits within the compression error instead of growing rings."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

import kernelfit
from kernelfit import data, kernels, synth

BOX = np.ones((3, 3)) / 9


def jpeg(image, quality, encoder="pillow", **options):
    """`image` (uint8) written as JPEG and read back."""
    if encoder == "opencv":
        cv2 = pytest.importorskip("cv2")
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, **options)
    buffer.seek(0)
    return np.asarray(Image.open(buffer))


def fit_recorded(x, y, size, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = kernelfit.fit_kernel(x, y, size, **options)
    return result, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def photo():
    return data.portrait()[100:420, 80:400]  # 320x320, the JPEG made of this crop


@pytest.mark.parametrize("quality", [90, 75])
@pytest.mark.parametrize("encoder", ["pillow", "opencv"])
def test_a_jpeg_box_blur_is_found_3x3_and_named(photo, quality, encoder):
    output = jpeg(synth.synthesize(photo, BOX, boundary="edge", dtype=np.uint8), quality,
                  encoder)
    result, messages = fit_recorded(photo, output, "auto")
    assert result.size == (3, 3)
    # (the compression error biases the kernel: within 0.01 at quality 90 on the whole
    # portrait, the target; a little more at 75 on this crop)
    assert np.abs(result.kernel - BOX).max() < (0.01 if quality == 90 else 0.02)
    assert result.compression["format"] == "JPEG"
    assert (result.compression["rows"], result.compression["columns"]) == (0, 0)
    assert min(result.compression["jumps"]) > 1.05
    assert any("compressed after the filter (JPEG)" in m for m in messages)
    assert not any("shift-invariant" in m or "non-linear filter" in m for m in messages)


def test_a_jpeg_gaussian_keeps_its_size(photo):
    gaussian = kernels.gaussian(5, 1.0)
    output = jpeg(synth.synthesize(photo, gaussian, boundary="edge", dtype=np.uint8), 90)
    result, _ = fit_recorded(photo, output, "auto")
    assert result.size == (5, 5) and result.compression is not None
    assert np.abs(result.kernel - gaussian).max() < 0.02


def test_white_noise_is_not_compression(photo):
    """The same error RMS as JPEG quality 90, but white: no grid, and 3x3 by the plain
    search."""
    rng = np.random.default_rng(0)
    blurred = kernelfit.convolve(photo.astype(float), BOX, boundary="edge")
    output = np.clip(np.round(blurred + 1.1 * rng.standard_normal(blurred.shape)), 0, 255)
    result, messages = fit_recorded(photo, output.astype(np.uint8), "auto")
    assert result.compression is None and result.size == (3, 3)
    assert not any("JPEG" in m for m in messages)
    exact, _ = fit_recorded(photo, synth.synthesize(photo, BOX, boundary="edge",
                                                    dtype=np.uint8), "auto")
    assert exact.compression is None


def test_the_grid_of_a_cropped_jpeg(photo):
    """A JPEG cropped by 3 rows and 5 columns: its blocks start at row 5, column 3."""
    output = jpeg(synth.synthesize(photo, BOX, boundary="edge", dtype=np.uint8), 75)
    result, _ = fit_recorded(photo[3:, 5:], output[3:, 5:], 3)
    assert (result.compression["rows"], result.compression["columns"]) == (5, 3)
    assert result.size == (3, 3) and "searched" not in result.compression


def test_a_colour_jpeg(photo):
    """Full-resolution colour (4:4:4); chroma subsampled 2x (4:2:0, most cameras') blurs
    the colour differences further, which no one kernel per channel describes."""
    colour = np.stack([photo, np.roll(photo, 7, axis=0), np.roll(photo, 5, axis=1)], axis=-1)
    output = jpeg(synth.synthesize(colour, BOX, boundary="edge", dtype=np.uint8,
                                   channel_axis=-1), 85, subsampling=0)
    result, _ = fit_recorded(colour, output, "auto", channel_axis=-1)
    assert result.compression is not None and result.size == (3, 3)


def test_compression_on_dask_and_in_the_kernel_file(photo, tmp_path):
    da = pytest.importorskip("dask.array")
    from kernelfit._io import read_fit, write_kernel

    output = jpeg(synth.synthesize(photo, BOX, boundary="edge", dtype=np.uint8), 75)
    here, _ = fit_recorded(photo, output, 3, method="lstsq-stats")
    lazy, _ = fit_recorded(da.from_array(photo, chunks=(100, 128)),
                           da.from_array(output, chunks=(128, 90)), 3)
    # (on Dask, white-noise errors: clustering them would be a pass through the client)
    assert here.compression["standard_errors"] == "clustered by block"
    assert lazy.compression == {key: value for key, value in here.compression.items()
                                if key != "standard_errors"}
    write_kernel(tmp_path / "k.json", here)
    assert read_fit(tmp_path / "k.json")[0].compression == here.compression
    assert "compression: JPEG" in str(here)


def test_cli_names_jpeg(photo, tmp_path, capsys):
    from kernelfit._cli import main

    Image.fromarray(photo).save(tmp_path / "before.png")
    Image.fromarray(synth.synthesize(photo, BOX, boundary="edge", dtype=np.uint8)).save(
        tmp_path / "after.jpg", quality=90)
    status = main(["fit", str(tmp_path / "before.png"), str(tmp_path / "after.jpg"), "--size",
                   "auto"])
    out, err = capsys.readouterr()
    assert status == 0 and "kernel K, 3x3" in out
    assert "compression: JPEG after the filter" in out
    assert "compressed after the filter (JPEG)" in err


def test_standard_errors_clustered_by_block(photo):
    """With JPEG found, the standard errors are the block-clustered sandwich, checked
    against numpy on the patch matrix: wider than white noise's, as the compression error
    correlates within a block."""
    from numpy.lib.stride_tricks import sliding_window_view

    crop = photo[:128, :128]
    output = jpeg(synth.synthesize(crop, BOX, boundary="edge", dtype=np.uint8), 75)
    result, _ = fit_recorded(crop, output, 3, boundary="edge", bias=True)
    white, _ = fit_recorded(crop, output, 3, boundary="edge", bias=True, checks=False)
    assert result.compression["standard_errors"] == "clustered by block"
    np.testing.assert_allclose(result.kernel, white.kernel, atol=1e-12)
    padded = np.pad(crop.astype(float), 1, mode="edge")
    A = np.c_[sliding_window_view(padded, (3, 3)).reshape(-1, 9), np.ones(crop.size)]
    theta = np.r_[result.kernel[::-1, ::-1].ravel(), result.bias]  # (correlation order)
    residual = output.astype(float).ravel() - A @ theta
    rows, columns = np.divmod(np.arange(crop.size), 128)
    block = (rows // 8) * 16 + columns // 8
    scores = np.stack([np.bincount(block, A[:, j] * residual) for j in range(10)], axis=1)
    bread = np.linalg.inv(A.T @ A)
    expected = np.sqrt(np.diag(bread @ scores.T @ scores @ bread))
    np.testing.assert_allclose(result.stderr[::-1, ::-1].ravel(), expected[:9], rtol=1e-8)
    assert result.bias_stderr == pytest.approx(expected[9], rel=1e-8)
    assert np.median(result.stderr / white.stderr) > 1.3
