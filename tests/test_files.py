"""Hostile image and array files: every bit kept, shown as viewers show it, refused on one
line when reading would mislead (several frames) or could not end well (an empty, truncated
or impossibly large file), and integer outputs saturated exactly at the dtype's limits."""

import io
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps, features

from kernelfit import _io, synth
from kernelfit._cli import main
from kernelfit._io import FileError, read_image


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(capsys, *argv):
    """Run the command line; it must fail with status 2 and one line on stderr."""
    status, _, err = run(capsys, *argv)
    assert status == 2 and err.startswith("kernelfit: error: ") and err.count("\n") == 1, err
    return err


# --- empty, truncated and huge arrays ---------------------------------------------------------

@pytest.mark.parametrize("name", ["empty.npy", "empty.png", "empty.txt", "empty.csv"])
def test_empty_files_are_one_line(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileError, match=r"empty\.\w+: is empty \(0 bytes\)$"):
        read_image(tmp_path / name)
    one_line_error(capsys, "apply", tmp_path / name, "box:size=3", "-o", tmp_path / "o.npy")


def npy_header(shape, dtype="<f8"):
    handle = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        handle, {"descr": dtype, "fortran_order": False, "shape": shape})
    return handle.getvalue()


def test_an_npy_header_claiming_more_than_memory_is_refused_before_allocating(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_io, "_physical_memory", lambda: 64 * 2**30)
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header((200000, 200000)))
    message = (f"{path}: its header claims a 200000x200000 float64 image (298.0 GiB), more "
               f"than this machine's memory (64.0 GiB)")
    with pytest.raises(FileError) as caught:
        read_image(path)
    assert str(caught.value) == message
    assert one_line_error(capsys, "apply", path, "box:size=3", "-o", tmp_path / "o.npy") \
        == f"kernelfit: error: {message}\n"


def test_a_truncated_npy_says_so(tmp_path):
    path = tmp_path / "short.npy"
    path.write_bytes(npy_header((100, 100)) + bytes(800))
    with pytest.raises(FileError, match=r"short\.npy: truncated: its header claims a 100x100 "
                                        r"float64 array \(80000 bytes\), the file holds 800"):
        _io.read_array(path)


def test_an_npy_of_objects_is_refused_from_its_header(tmp_path):
    path = tmp_path / "objects.npy"
    path.write_bytes(npy_header((3,), "|O"))
    with pytest.raises(FileError, match=r"objects\.npy: an image must be numeric; got dtype "
                                        r"object"):
        read_image(path)


# --- 16-bit colour in -------------------------------------------------------------------------

def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload)))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def colour16(rng):
    """A 16-bit colour image whose low bytes matter: every value is distinct modulo 256."""
    return rng.integers(0, 65536, size=(23, 31, 3), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("alpha", [False, True])
def test_16bit_colour_keeps_every_bit(tmp_path, colour16, suffix, alpha):
    path = tmp_path / f"c16{suffix}"
    pixels = np.dstack([colour16, colour16[..., :1] // 3]) if alpha else colour16
    assert cv2.imwrite(str(path), pixels[..., [2, 1, 0, 3][:pixels.shape[-1]]])  # BGR(A)
    array, notes = read_image(path)
    assert array.dtype == np.uint16 and array.shape == colour16.shape
    np.testing.assert_array_equal(array, colour16)
    assert notes == ([f"{path}: alpha channel dropped"] if alpha else [])


def test_16bit_grey_with_alpha_keeps_every_bit(tmp_path, colour16):
    import imagecodecs

    path = tmp_path / "la16.png"
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(colour16[..., :2])))
    array, notes = read_image(path)
    assert array.dtype == np.uint16 and array.shape == colour16.shape[:2]
    np.testing.assert_array_equal(array, colour16[..., 0])
    assert notes == [f"{path}: alpha channel dropped"]


def test_reading_images_does_not_import_imagecodecs_until_needed():
    code = ("import sys, kernelfit, kernelfit._cli, kernelfit._io; "
            "print('imagecodecs' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "False"


# --- EXIF orientation -------------------------------------------------------------------------

TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
             6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def shown(array, orientation):
    """`array` as a viewer shows it, by Pillow's transposes (one channel at a time)."""
    if orientation == 1:
        return array
    if array.ndim == 3:
        return np.dstack([shown(array[..., c], orientation) for c in range(array.shape[-1])])
    return np.asarray(Image.fromarray(array).transpose(TRANSPOSE[orientation]))


def check_orientation(path, expected, orientation):
    array, notes = read_image(path)
    np.testing.assert_array_equal(array, expected)
    turned = [note for note in notes if "EXIF orientation" in note]
    if orientation == 1:
        assert turned == []
    else:
        assert turned == [f"{path}: rotated by its EXIF orientation ({orientation}: "
                          f"{_io._TURNS[orientation][0]}), as viewers show it"]


def with_exif(png, orientation):
    """A PNG file's bytes with an eXIf chunk (raw TIFF-style EXIF) after its IHDR."""
    exif = Image.Exif()
    exif[_io._ORIENTATION] = orientation
    payload = exif.tobytes()
    assert payload.startswith(b"Exif\x00\x00")
    ihdr_end = len(PNG_SIGNATURE) + 8 + 13 + 4
    return png[:ihdr_end] + png_chunk(b"eXIf", payload[6:]) + png[ihdr_end:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_is_read_as_its_exif_orientation_shows_it(tmp_path, rng, orientation):
    pixels = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[_io._ORIENTATION] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    with Image.open(path) as picture:
        stored = np.asarray(picture.convert("RGB"))
        reference = np.asarray(ImageOps.exif_transpose(picture).convert("RGB"))
    np.testing.assert_array_equal(reference, shown(stored, orientation))
    check_orientation(path, reference, orientation)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_is_read_as_its_orientation_shows_it(tmp_path, rng, orientation):
    pixels = rng.integers(0, 256, size=(16, 24), dtype=np.uint8)
    path = tmp_path / "scan.tif"
    Image.fromarray(pixels).save(path, tiffinfo={_io._ORIENTATION: orientation})
    check_orientation(path, shown(pixels, orientation), orientation)


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_palette_tiff_is_turned_right_or_refused(tmp_path, rng, compression, orientation):
    # Pillow turns TIFFs as it loads them; uncompressed and sideways, Pillow 13 decodes them
    # with the shown size instead of the stored one: that must be refused, never returned
    pixels = rng.integers(0, 256, size=(16, 24), dtype=np.uint8)
    picture = Image.fromarray(pixels).convert("P")
    path = tmp_path / "palette.tif"
    picture.save(path, tiffinfo={_io._ORIENTATION: orientation}, compression=compression)
    expected = shown(np.asarray(picture.convert("RGB")), orientation)
    try:
        check_orientation(path, expected, orientation)
    except FileError as exc:
        assert compression is None and orientation in (5, 6, 7, 8)
        assert str(exc) == (f"{path}: Pillow could not turn this TIFF by its orientation tag "
                            f"({orientation}); save it upright (orientation 1) or as .npy")


@pytest.mark.parametrize("orientation", [3, 6, 7, 8])
def test_16bit_colour_is_read_as_its_exif_orientation_shows_it(tmp_path, colour16,
                                                               orientation):
    ok, encoded = cv2.imencode(".png", colour16[..., ::-1])
    path = tmp_path / "c16.png"
    path.write_bytes(with_exif(encoded.tobytes(), orientation))
    check_orientation(path, shown(colour16, orientation), orientation)


# --- frames -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png", ".webp"])
def test_files_of_several_frames_are_refused(tmp_path, capsys, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    frames = [Image.fromarray(np.full((12, 10), value, np.uint8)) for value in (0, 90, 180)]
    path = tmp_path / f"animation{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    message = (f"{path}: has 3 frames; kernelfit reads single images: save the frame you want "
               f"as its own file")
    with pytest.raises(FileError) as caught:
        read_image(path)
    assert str(caught.value) == message
    assert one_line_error(capsys, "apply", path, "box:size=3", "-o",
                          tmp_path / "out.png") == f"kernelfit: error: {message}\n"


def test_a_jpeg_with_extra_pictures_is_read_as_its_primary_one(tmp_path):
    # MPO: phones store previews and depth maps after the photograph itself
    primary = np.full((8, 8, 3), 40, np.uint8)
    path = tmp_path / "phone.mpo"
    Image.fromarray(primary).save(path, save_all=True,
                                  append_images=[Image.fromarray(primary + 150)])
    array, notes = read_image(path)
    assert notes == [f"{path}: read the primary picture of 2 (MPO)"]
    assert np.abs(array.astype(int) - 40).max() <= 2  # JPEG


def test_a_single_frame_gif_is_read(tmp_path):
    pixels = np.arange(120, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(pixels).save(tmp_path / "still.gif")
    array, notes = read_image(tmp_path / "still.gif")
    assert notes == [] and array.shape == (12, 10, 3)
    np.testing.assert_array_equal(array[..., 0], pixels)


# --- images too large to decode ---------------------------------------------------------------

def png_claiming(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b""))
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [100000, 10000])  # Pillow's error, and its warning
def test_a_png_header_claiming_too_many_pixels_is_one_line(tmp_path, capsys, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    claimed = f"{side * side:,} pixels"
    with pytest.raises(FileError, match=rf"bomb\.png: its header claims {claimed}, more than "
                                        rf"Pillow decodes safely"):
        read_image(path)
    err = one_line_error(capsys, "apply", path, "box:size=3", "-o", tmp_path / "o.png")
    # the command line records warnings (and reports them), so Pillow's warning lets the
    # read go on: the missing pixel data end it
    assert claimed in err if side == 100000 else "bomb.png" in err


# --- 16-bit colour out ------------------------------------------------------------------------

def test_apply_keeps_16bit_colour(tmp_path, capsys, colour16):
    source = tmp_path / "in.png"
    cv2.imwrite(str(source), colour16[..., ::-1])
    np.save(tmp_path / "one.npy", np.array([[1.0]]))
    for output in ("out.npy", "out.png", "out.tif"):
        status, out, err = run(capsys, "apply", source, tmp_path / "one.npy", "-o",
                               tmp_path / output)
        assert status == 0 and err == "" and "uint16" in out, (out, err)
        array, _ = read_image(tmp_path / output)
        np.testing.assert_array_equal(array, colour16)
    # and OpenCV reads what kernelfit wrote
    again = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(again[..., ::-1], colour16)


def test_16bit_colour_to_a_format_without_it_is_refused(tmp_path, capsys, colour16):
    np.save(tmp_path / "in.npy", colour16)
    err = one_line_error(capsys, "apply", tmp_path / "in.npy", "box:size=3", "-o",
                         tmp_path / "out.jpg")
    assert "16-bit colour" in err and ".png" in err and ".npy" in err


# --- 64-bit integers --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.uint8])
def test_quantize_saturates_exactly_at_the_dtypes_limits(dtype):
    info = np.iinfo(dtype)
    data = [float(info.max), float(info.max) * 2, 1e300, np.inf, float(info.min),
            float(info.min) - 2**20 * (1 + abs(float(info.min))), -1e300, -np.inf, 7.0]
    expected = [info.max] * 4 + [info.min] * 4 + [7]
    result = synth.quantize(data, dtype)
    assert result.dtype == dtype
    assert result.tolist() == expected


def test_quantize_keeps_64bit_values_that_float64_holds():
    below = np.nextafter(2.0**63, 0)  # 2**63 - 1024, the largest float64 below int64's max
    assert synth.quantize([below, -2.0**63], np.int64).tolist() == [2**63 - 1024, -2**63]
    below = np.nextafter(2.0**64, 0)
    assert synth.quantize([below, 0.4], np.uint64).tolist() == [2**64 - 2048, 0]


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@pytest.mark.parametrize("gain", [1.0, -1.0])
def test_apply_saturates_64bit_images_at_their_limits(tmp_path, capsys, dtype, gain):
    info = np.iinfo(dtype)
    image = np.array([[info.max, info.max - 5, info.min, info.min + 5, 0]] * 3, dtype=dtype)
    np.save(tmp_path / "in.npy", image)
    np.save(tmp_path / "k.npy", np.array([[gain]]))
    status, _, err = run(capsys, "apply", tmp_path / "in.npy", tmp_path / "k.npy", "-o",
                         tmp_path / "out.npy")
    assert status == 0 and err == ""
    result = np.load(tmp_path / "out.npy")
    assert result.dtype == dtype

    def saturated(value):  # the exact result of the float64 computation, clipped
        return info.max if value >= info.max else info.min if value <= info.min else value

    assert result[0].tolist() == [saturated(float(v) * gain) for v in image[0].tolist()]
