"""Files for the command line: images in and out (Pillow), kernels and masks as arrays, atomically.

Every reader raises FileError with a one-line message; every writer writes a temporary file
beside the target and renames it, so a failed write never leaves a half-written file.
"""

import contextlib
import json
import os
import re
import tempfile

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
ARRAY_SUFFIXES = (".npy", ".txt", ".csv")
KERNEL_SUFFIXES = ARRAY_SUFFIXES + (".json",)


class FileError(Exception):
    """A file that cannot be read or written as asked; the message is one line for the user."""


def suffix(path):
    return os.path.splitext(str(path))[1].lower()


def read_image(path):
    """An image file (via Pillow) or an array file, as an ndarray, and notes for the user.

    Grey images are 2-D, colour images (H, W, 3) with the channels last; 8-bit images are
    uint8 and 16-bit ones uint16 (16-bit colour PNG and TIFF, which Pillow would cut to 8
    bits, are decoded by imagecodecs). An alpha channel is dropped, and an image is turned
    as its EXIF (or TIFF) orientation says viewers show it, each with a note. Files of several
    frames (animations, multi-page TIFF) and images too large to decode are refused.
    """
    path = str(path)
    if suffix(path) in ARRAY_SUFFIXES:
        return read_array(path, "image"), []
    from PIL import Image, ImageOps, UnidentifiedImageError

    _check_readable(path)
    notes = []
    try:
        with Image.open(path) as picture:
            _check_frames(path, picture, notes)
            raw = _raw_decoding(path, picture)
            _check_memory(path, picture.size[::-1] + (len(picture.getbands()),),
                          np.uint16 if raw else _SAMPLE_TYPES.get(picture.mode, np.uint8),
                          "image")
            orientation = None
            if picture.format == "TIFF":
                # read before loading: Pillow turns TIFFs by this tag as it loads them
                orientation = picture.tag_v2.get(_ORIENTATION)
            if raw:
                array = _read_raw(path, picture.format)
                if orientation is None:
                    orientation = picture.getexif().get(_ORIENTATION)
                array = _orient(array, orientation)
                if array.shape[-1] in (2, 4):
                    notes.append(f"{path}: alpha channel dropped")
                    array = array[..., 0] if array.shape[-1] == 2 else array[..., :3]
                elif array.shape[-1] == 1:
                    array = array[..., 0]
            else:
                picture.load()
                if picture.format == "TIFF":
                    _check_turned(path, picture, orientation)
                else:
                    orientation = picture.getexif().get(_ORIENTATION)
                    picture = ImageOps.exif_transpose(picture)
                mode = picture.mode
                if mode == "P":
                    picture = picture.convert("RGBA" if "transparency" in picture.info
                                              else "RGB")
                    mode = picture.mode
                if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
                    notes.append(f"{path}: alpha channel dropped")
                    picture = picture.convert("RGB" if mode.startswith("RGB") else "L")
                elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    picture = picture.convert("L" if mode == "1" else "RGB")
                array = np.asarray(picture)
    except UnidentifiedImageError:
        raise FileError(f"{path}: not an image file Pillow can read (PNG, JPEG, TIFF, BMP, "
                        f"...) nor an array file (.npy, .txt, .csv)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Image.open refuses (or, below twice its limit, warns about) images whose header
        # claims more pixels than Pillow decodes safely; the count is in its message only
        found = re.search(r"(\d+) pixels", str(exc))
        claimed = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise FileError(f"{path}: its header claims {claimed}, more than Pillow decodes "
                        f"safely (a possible decompression bomb); crop or downscale the "
                        f"image") from None
    except OSError as exc:
        raise FileError(f"{path}: cannot read the image: {_first_line(exc)}") from None
    if orientation in _TURNS and orientation != 1:
        notes.append(f"{path}: rotated by its EXIF orientation ({orientation}: "
                     f"{_TURNS[orientation][0]}), as viewers show it")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array, notes


_ORIENTATION = 0x0112  # the EXIF (and TIFF) Orientation tag
# Each EXIF orientation: what it does, and in numpy the turn that Pillow's exif_transpose makes
# (FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90)
_TURNS = {
    1: ("as stored", lambda a: a),
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("turned 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("transposed", lambda a: a.swapaxes(0, 1)),
    6: ("turned 90 degrees clockwise", lambda a: np.rot90(a, -1)),
    7: ("transposed across the other diagonal", lambda a: np.rot90(a, -1)[::-1]),
    8: ("turned 90 degrees anticlockwise", lambda a: np.rot90(a, 1)),
}
_SAMPLE_TYPES = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I": np.int32,
                 "F": np.float32}


def _orient(array, orientation):
    """`array` (rows, columns[, channels]) as its EXIF `orientation` says it is shown."""
    if orientation not in _TURNS:
        return array
    return np.ascontiguousarray(_TURNS[orientation][1](array))


def _check_frames(path, picture, notes):
    """Refuse animations and multi-page files, whose frame 0 alone would mislead; a JPEG
    with extra pictures (MPO: previews, depth maps) is read as its first, primary one."""
    frames = getattr(picture, "n_frames", 1)
    if frames > 1 and picture.format == "MPO":
        notes.append(f"{path}: read the primary picture of {frames} (MPO)")
    elif frames > 1:
        raise FileError(f"{path}: has {frames} frames; kernelfit reads single images: save "
                        f"the frame you want as its own file")


def _raw_decoding(path, picture):
    """Whether to decode the samples with imagecodecs rather than Pillow: PNG and TIFF
    colour (or grey and alpha) with 16 bits per sample, which Pillow has no modes for and
    would cut to 8 bits; and grey or colour 8- and 16-bit TIFFs that need turning, which
    Pillow (13) mis-decodes when uncompressed and sideways."""
    if picture.format == "PNG":
        with open(path, "rb") as handle:
            header = handle.read(26)  # signature, IHDR length and type, size, depth, colour
        return len(header) == 26 and header[24] == 16 and header[25] in (2, 4, 6)
    if picture.format != "TIFF":
        return False
    tags = picture.tag_v2
    bits = set(_as_tuple(tags.get(258, 1)))  # BitsPerSample
    plain = (tags.get(262) in (1, 2) and len(bits) == 1 and bits <= {8, 16}
             and set(_as_tuple(tags.get(339, 1))) == {1})  # MinIsBlack or RGB, unsigned
    wide = bits == {16} and tags.get(277, 1) > 1  # SamplesPerPixel
    return plain and (wide or tags.get(_ORIENTATION, 1) in range(2, 9))


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _read_raw(path, kind):
    """A PNG or a TIFF (its first page) decoded by imagecodecs, every bit kept, as stored
    (not yet turned by its orientation)."""
    try:
        import imagecodecs
    except ImportError:
        raise FileError(f"{path}: reading this image without losing bits needs imagecodecs "
                        f"(pip install imagecodecs)") from None
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        array = (imagecodecs.png_decode(content) if kind == "PNG" else
                 imagecodecs.tiff_decode(content))
    except Exception as exc:  # each codec raises its own error type
        raise FileError(f"{path}: cannot read the image: {_first_line(exc)}") from None
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.dtype not in (np.uint8, np.uint16) or array.ndim != 3 or \
            array.shape[-1] not in (1, 2, 3, 4):
        raise FileError(f"{path}: decoded as {array.shape} {array.dtype}; expected (rows, "
                        f"columns[, 2 to 4 samples]) of 8 or 16 bits")
    return array


def _check_turned(path, picture, orientation):
    """Refuse a TIFF that Pillow turned by its orientation tag to the wrong shape."""
    stored = (picture.tag_v2.get(256), picture.tag_v2.get(257))  # ImageWidth, ImageLength
    shown = stored[::-1] if orientation in (5, 6, 7, 8) else stored
    if None not in stored and picture.size != shown:
        raise FileError(f"{path}: Pillow could not turn this TIFF by its orientation tag "
                        f"({orientation}); save it upright (orientation 1) or as .npy")


def _physical_memory():
    """Bytes of memory on this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(path, shape, dtype, what):
    """Refuse, before allocating, an array that a file's header says is larger than this
    machine's memory."""
    needed = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    memory = _physical_memory()
    if memory is not None and needed > memory:
        raise FileError(f"{path}: its header claims a {'x'.join(map(str, shape))} "
                        f"{np.dtype(dtype)} {what} ({needed / 2**30:.1f} GiB), more than this "
                        f"machine's memory ({memory / 2**30:.1f} GiB)")


def is_zarr(path):
    """Whether `path` is a zarr store (a folder ending in .zarr, or holding zarr metadata):
    read in chunks whatever the flags."""
    path = str(path)
    return suffix(path) == ".zarr" or os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("zarr.json", ".zarray"))


def read_lazily(path, resources, what="image"):
    """A file as a dask array read chunk by chunk when it is needed, and notes for the user.

    Zarr stores open as they are chunked (`dask.array.from_zarr`); .npy files are
    memory-mapped; TIFFs are read by their own tiles or strips (tifffile's zarr view, whose
    file stays open until `resources`, a `contextlib.ExitStack`, closes). Other files cannot
    be read in parts: they are decoded whole (`read_image`), with a note. Colour images keep
    their channels last; an alpha channel is dropped, with a note.
    """
    path = str(path)
    try:
        import dask.array as da
    except ImportError:
        raise FileError(f"{path}: reading in chunks needs Dask: pip install "
                        f"'kernelfit[dask]'") from None
    notes = []
    if is_zarr(path):
        if not os.path.exists(path):
            raise FileError(f"{path}: no such zarr store")
        if not os.path.isdir(path) or not any(os.path.exists(os.path.join(path, name))
                                              for name in ("zarr.json", ".zarray")):
            raise FileError(f"{path}: not a zarr array (a folder with zarr.json or .zarray)")
        try:
            array = da.from_zarr(path)
        except Exception as exc:  # zarr's errors vary by version and store
            raise FileError(f"{path}: cannot open the zarr array: {_first_line(exc)}") \
                from None
    elif suffix(path) == ".npy":
        _check_readable(path)
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise FileError(f"{path}: cannot read {_a(what)}: {_first_line(exc)}") from None
        array = da.from_array(mapped, chunks="auto")
    elif suffix(path) in (".tif", ".tiff"):
        _check_readable(path)
        import tifffile

        try:
            store = resources.enter_context(tifffile.imread(path, aszarr=True))
            array = da.from_zarr(store)
        except Exception as exc:  # tifffile raises many kinds for a broken file
            raise FileError(f"{path}: cannot read the TIFF in parts: {_first_line(exc)}") \
                from None
    else:
        array, notes = read_image(path) if suffix(path) not in ARRAY_SUFFIXES else (
            read_array(path, what), [])
        notes.append(f"{path}: a {suffix(path) or 'suffix-less'} file cannot be read in "
                     f"parts; decoded whole")
        array = da.from_array(array, chunks="auto")
    if array.dtype.kind not in "biuf":
        raise FileError(f"{path}: {_a(what)} must be real numbers; got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] in (2, 4) and what == "image":
        notes.append(f"{path}: alpha channel dropped")
        array = array[..., 0] if array.shape[-1] == 2 else array[..., :3]
    return array, notes


def read_array(path, what="array"):
    """A numeric array from .npy, .txt (whitespace) or .csv (commas)."""
    path = str(path)
    _check_readable(path)
    try:
        if suffix(path) == ".npy":
            array = _read_npy(path, what)
        elif suffix(path) in (".txt", ".csv"):
            delimiter = "," if suffix(path) == ".csv" else None
            array = np.loadtxt(path, delimiter=delimiter, ndmin=1)
        else:
            raise FileError(f"{path}: {_a(what)} file must end in "
                            f"{', '.join(ARRAY_SUFFIXES)}")
    except (ValueError, OSError) as exc:
        raise FileError(f"{path}: cannot read {_a(what)}: {_first_line(exc)}") from None
    if array.dtype.kind not in "biufc":
        raise FileError(f"{path}: {_a(what)} must be numeric; got dtype {array.dtype}")
    return array


def _read_npy(path, what):
    """A .npy array, its header checked first: numeric, within memory, and all there."""
    from numpy.lib import format as npy

    with open(path, "rb") as handle:
        try:
            version = npy.read_magic(handle)
        except ValueError:
            raise FileError(f"{path}: not a .npy file (no NumPy header)") from None
        # version 3.0 differs from 2.0 only in allowing UTF-8 in field names
        read_header = (npy.read_array_header_1_0 if version == (1, 0)
                       else npy.read_array_header_2_0)
        shape, _, dtype = read_header(handle)
        if dtype.kind not in "biufc":
            raise FileError(f"{path}: {_a(what)} must be numeric; got dtype {dtype}")
        _check_memory(path, shape, dtype, what)
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = os.fstat(handle.fileno()).st_size - handle.tell()
        if held < needed:
            raise FileError(f"{path}: truncated: its header claims a "
                            f"{'x'.join(map(str, shape))} {dtype} {what} ({needed} bytes), "
                            f"the file holds {held} bytes of data")
        handle.seek(0)
        return npy.read_array(handle, allow_pickle=False)


def read_kernel(path):
    """A kernel file: .npy, .txt/.csv, or kernelfit's .json. Returns (kernel, convention).

    The convention is the one the JSON file records, or None for plain arrays.
    """
    path = str(path)
    if suffix(path) != ".json":
        return read_array(path, "kernel"), None
    fit, _ = read_fit(path)
    return np.asarray(fit.kernel), fit.convention


def read_fit(path):
    """A kernelfit .json kernel file: the KernelFit it records (see `fit_to_dict`) and the
    file's whole content (the command line's notes too)."""
    path = str(path)
    _check_readable(path)
    try:
        with open(path) as handle:
            content = json.load(handle)
    except RecursionError:
        raise FileError(f"{path}: not a kernelfit kernel file (nested too deeply)") from None
    except (ValueError, OSError) as exc:
        raise FileError(f"{path}: not a kernelfit kernel file ({_first_line(exc)})") from None
    try:
        return fit_from_dict(content), content
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
        raise FileError(f"{path}: not a usable kernelfit kernel file: "
                        f"{_first_line(exc)}") from None


def _a(what):
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what}"


def _first_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_readable(path):
    if not os.path.exists(path):
        raise FileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FileError(f"{path}: is a directory, not a file")
    if os.path.isfile(path) and os.path.getsize(path) == 0:  # a FIFO's size says nothing
        raise FileError(f"{path}: is empty (0 bytes)")


def check_output_path(path, inputs=(), suffixes=None, what="output"):
    """Refuse, before any work, to write onto an input or a special file (a FIFO, a
    device), into a directory that does not exist, or with a suffix not in `suffixes`."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileError(f"{path}: directory {folder} does not exist")
    if os.path.isdir(path):
        raise FileError(f"{path}: is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise FileError(f"{path}: is not a regular file (a FIFO, a device, ...); refusing to "
                        f"replace it")
    for source in inputs:
        if source is not None and os.path.exists(path) and os.path.exists(str(source)) \
                and os.path.samefile(path, str(source)):
            raise FileError(f"{path}: refusing to overwrite an input file")
    if suffixes is not None and suffix(path) not in suffixes:
        raise FileError(f"{path}: {_a(what)} file must end in {', '.join(suffixes)}")


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside `path`, renamed onto it when the block succeeds. A failure
    to write is a FileError naming `path` (never the hidden temporary file)."""
    folder, name = os.path.split(os.path.abspath(str(path)))
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.",
                                             suffix=suffix(path))
    except OSError as exc:
        raise FileError(f"{path}: cannot write in {folder}: {exc.strerror}") from None
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; a new file is not
    try:
        yield temporary
        os.replace(temporary, str(path))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(exc, OSError) and not isinstance(exc, FileError) and \
                temporary in (exc.filename, exc.filename2):
            raise FileError(f"{path}: cannot write: {exc.strerror}") from None
        raise


def _umask():
    """The process's file-creation mask, read without setting it (Linux: /proc), so that
    writing a file changes no state another thread could see; else by setting it back."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_image(path, array):
    """Write an integer image (uint8 grey or colour, uint16 grey; uint16 colour as PNG or
    TIFF, by imagecodecs) or any array as .npy."""
    path = str(path)
    if suffix(path) == ".npy":
        with atomic_path(path) as temporary:
            np.save(temporary, array)
        return
    if suffix(path) not in IMAGE_SUFFIXES:
        raise FileError(f"{path}: unknown output type; use an image suffix "
                        f"({', '.join(IMAGE_SUFFIXES)}) or .npy")
    from PIL import Image

    array = np.asarray(array)
    if array.dtype == np.uint16 and array.ndim == 3:
        _write_wide_colour(path, array)
        return
    if array.dtype not in (np.uint8, np.uint16) and not (array.dtype == np.float32
                                                          and array.ndim == 2
                                                          and suffix(path) in (".tif",
                                                                               ".tiff")):
        raise FileError(f"{path}: an image file needs uint8 or uint16 data (or 2-D float32 "
                        f"for TIFF); got {array.dtype}; round it or write .npy")
    picture = Image.fromarray(array)
    pillow_format = Image.registered_extensions()[suffix(path)]
    try:
        with atomic_path(path) as temporary:
            picture.save(temporary, format=pillow_format)
    except (OSError, ValueError) as exc:
        raise FileError(f"{path}: cannot write the image: {exc}") from None


def _write_wide_colour(path, array):
    """A 16-bit colour image as PNG or TIFF (imagecodecs: Pillow would cut it to 8 bits)."""
    if suffix(path) not in (".png", ".tif", ".tiff") or array.shape[-1] != 3:
        raise FileError(f"{path}: a 16-bit colour image is written as .png, .tif, .tiff or "
                        f".npy; got {suffix(path)} for {array.shape} uint16")
    try:
        import imagecodecs
    except ImportError:
        raise FileError(f"{path}: writing a 16-bit colour image needs imagecodecs (pip "
                        f"install imagecodecs), or write .npy") from None
    encode = imagecodecs.png_encode if suffix(path) == ".png" else imagecodecs.tiff_encode
    content = encode(np.ascontiguousarray(array))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(content)


def write_kernel(path, fit=None, kernel=None, extra=None):
    """Write a kernel: .npy, .txt/.csv (plain numbers), or .json (kernel and diagnostics)."""
    path = str(path)
    kernel = np.asarray(fit.kernel if kernel is None else kernel)
    kind = suffix(path)
    if kind not in KERNEL_SUFFIXES:
        raise FileError(f"{path}: a kernel file must end in {', '.join(KERNEL_SUFFIXES)}")
    with atomic_path(path) as temporary:
        if kind == ".npy":
            np.save(temporary, kernel)
        elif kind in (".txt", ".csv"):
            if kernel.ndim > 2 or np.iscomplexobj(kernel):
                raise FileError(f"{path}: plain text holds real 1-D or 2-D kernels; this one "
                                f"is {kernel.shape} {kernel.dtype}: write .npy or .json")
            np.savetxt(temporary, kernel, delimiter="," if kind == ".csv" else " ",
                       fmt="%.10g")
        else:
            with open(temporary, "w") as handle:
                json.dump(fit_to_dict(fit, extra) if fit is not None else
                          {"kernel": kernel.real.tolist()}, handle, indent=1)
                handle.write("\n")


def _plain(value):
    """JSON-ready: arrays to lists, numpy scalars to Python, infinities and NaN to None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, complex):
        return {"real": _plain(value.real), "imag": _plain(value.imag)}
    return value


# The kernel file: everything `KernelFit.predict` needs to re-apply the filter (kernel, bias,
# convention, mode, boundary, fill value, origin, channel layout, the unchanged frame), the
# diagnostics, and which kernelfit wrote it.
FORMAT = "kernelfit-kernel"
FORMAT_VERSION = 1
_FIELDS = ("convention", "method", "mode", "boundary", "fillvalue", "origin", "frame", "size",
           "channels", "channel_axis", "bias", "bias_stderr", "stderr", "residual_rms", "r2",
           "n_equations", "n_unknowns", "rank", "identifiable", "condition_number",
           "n_masked", "reg", "n_steps", "stop_reason", "device", "boundary_scores",
           "constraints", "weighted", "noise", "robust", "compression", "prior", "errors")


def fit_to_dict(fit, extra=None):
    """A KernelFit as a JSON-ready dict: the kernel, how to re-apply it, and every
    diagnostic (`fit_from_dict` reads it back)."""
    from . import __version__

    kernel = np.asarray(fit.kernel)
    content = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "kernelfit_version": __version__, "kernel": _plain(kernel.real)}
    if np.iscomplexobj(kernel):
        content["kernel_imag"] = _plain(kernel.imag)
    for name in _FIELDS:
        if name == "identifiable":
            content[name] = bool(fit.identifiable)
        else:
            content[name] = _plain(getattr(fit, name))
    content.update(extra or {})
    return content


def fit_from_dict(content):
    """The KernelFit a kernel file records; every field is checked (ValueError or
    TypeError naming it). Files without the re-application fields (plain kernels, older
    files) get the defaults of `kernelfit.convolve`."""
    from ._result import KernelFit
    from ._validation import BOUNDARIES, CONVENTIONS, MODES

    if not isinstance(content, dict):
        raise ValueError(f"expected a JSON object; got {type(content).__name__}")
    if content.get("format", FORMAT) != FORMAT:
        raise ValueError(f"format {content.get('format')!r} is not {FORMAT!r}")
    version = content.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"format_version {version!r}: this kernelfit reads up to "
                         f"{FORMAT_VERSION}; upgrade kernelfit")
    if "kernel" not in content:
        raise ValueError("no 'kernel' field")
    kernel = _numbers(content["kernel"], "kernel")
    if kernel.size == 0:
        raise ValueError("'kernel' is empty")
    if "kernel_imag" in content:
        imaginary = _numbers(content["kernel_imag"], "kernel_imag")
        if imaginary.shape != kernel.shape:
            raise ValueError(f"'kernel_imag' has shape {imaginary.shape}; 'kernel' has "
                             f"{kernel.shape}")
        kernel = kernel + 1j * imaginary

    def choice(name, choices, default):
        value = content.get(name, default)
        if value is not None and value not in choices:
            raise ValueError(f"{name!r} must be one of {', '.join(map(repr, choices))}; "
                             f"got {value!r}")
        return value

    convention = choice("convention", CONVENTIONS, "convolution") or "convolution"
    mode = choice("mode", MODES, "same") or "same"
    boundary = choice("boundary", tuple(BOUNDARIES), None)
    channels = choice("channels", ("shared", "separate", "full"), None)
    channel_axis = content.get("channel_axis")
    if channel_axis is not None and not _is_int(channel_axis):
        raise ValueError(f"'channel_axis' must be an integer or null; got {channel_axis!r}")
    if (channels is None) != (channel_axis is None):
        raise ValueError("'channels' and 'channel_axis' go together (both or neither)")
    extra_axes = {None: (0,), "shared": (0,), "separate": (1,), "full": (1, 2)}[channels]
    size = _integers(content.get("size", list(kernel.shape[:kernel.ndim - extra_axes[-1]])),
                     "size")
    if not size or tuple(size) != kernel.shape[:len(size)] or \
            kernel.ndim - len(size) not in extra_axes:
        raise ValueError(f"'size' {list(size)} does not match the kernel's shape "
                         f"{kernel.shape} with channels {channels!r}")
    origin = _integers(content.get("origin") or [0] * len(size), "origin")
    if len(origin) != len(size):
        raise ValueError(f"'origin' {list(origin)} needs {len(size)} values")
    frame = content.get("frame")
    if frame is not None:
        frame = tuple(tuple(_integers(pair, "frame")) for pair in frame)
        if len(frame) != len(size) or any(len(p) != 2 or min(p) < 0 for p in frame):
            raise ValueError(f"'frame' needs {len(size)} pairs of non-negative integers; got "
                             f"{content['frame']!r}")
    fillvalue = _scalar(content.get("fillvalue", 0), "fillvalue")
    bias = content.get("bias")
    if bias is not None:
        bias = _bias(bias)
    stderr = content.get("stderr")
    stderr = (np.full(kernel.shape, np.nan) if stderr is None else
              _numbers(stderr, "stderr", missing=np.nan))
    if stderr.shape != kernel.shape:
        raise ValueError(f"'stderr' has shape {stderr.shape}; 'kernel' has {kernel.shape}")
    bias_stderr = content.get("bias_stderr")
    if bias_stderr is not None:
        bias_stderr = _numbers(bias_stderr, "bias_stderr", missing=np.nan)
        bias_stderr = bias_stderr.item() if bias_stderr.ndim == 0 else bias_stderr

    def number(name, default, kind=float):
        value = content.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name!r} must be a number; got {value!r}")
        return kind(value)

    n_unknowns = number("n_unknowns", kernel.size + (0 if bias is None else np.size(bias)),
                        int)
    scores = content.get("boundary_scores")
    if scores is not None:
        if not isinstance(scores, dict):
            raise ValueError("'boundary_scores' must be an object")
        scores = {str(rule): (np.nan if v is None else float(v)) for rule, v in scores.items()}
    constraints = content.get("constraints")
    if constraints is not None:
        from ._constrain import check_constraints
        if not isinstance(constraints, dict):
            raise ValueError("'constraints' must be an object")
        try:
            checked = check_constraints(constraints, "lstsq")  # (each value by name)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'constraints' holds what no fit has: "
                             f"{str(exc).replace('constraints[', '[')}") from None
        constraints = None if checked is None else checked.as_dict()
    return KernelFit(
        kernel=kernel, size=tuple(size), bias=bias, stderr=stderr, bias_stderr=bias_stderr,
        method=str(content.get("method") or "file"), mode=mode, boundary=boundary,
        convention=convention, fillvalue=fillvalue, origin=tuple(origin),
        channel_axis=channel_axis, channels=channels,
        residual_rms=number("residual_rms", np.nan), r2=number("r2", np.nan),
        n_equations=number("n_equations", 0, int), n_unknowns=n_unknowns,
        rank=number("rank", n_unknowns, int),
        condition_number=number("condition_number", np.nan),
        n_masked=number("n_masked", 0, int), boundary_scores=scores, frame=frame,
        constraints=constraints, weighted=content.get("weighted") is True,
        noise=_noise_record(content.get("noise")), robust=_robust_record(content.get("robust")),
        compression=_compression_record(content.get("compression")),
        prior=_prior_record(content.get("prior")),
        errors="sandwich" if content.get("errors") == "sandwich" else "model")


def _noise_record(noise):
    """A kernel file's noise record (a fit's `noise`), checked, or None."""
    if noise is None:
        return None
    if not isinstance(noise, dict) or noise.get("model") not in ("poisson", "auto"):
        raise ValueError(f"'noise' must be an object with model 'poisson' or 'auto'; got "
                         f"{noise!r}")
    record = {"model": noise["model"]}
    if noise["model"] == "auto":
        record["level_dependent"] = noise.get("level_dependent") is True
        if "curve" in noise:
            record["curve"] = _numbers(noise["curve"], "noise curve").tolist()
    names = ("gain", "read_noise", "refits", "chi2_dof") + (
        ("intercept", "slope", "floor") if noise["model"] == "auto" else ())
    for name in names:
        if name not in noise and noise["model"] == "auto":
            continue
        value = noise.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
            raise ValueError(f"'noise' {name!r} must be a number; got {value!r}")
        record[name] = np.nan if value is None else value
    return record


def _compression_record(compression):
    """A kernel file's compression record (a fit's `compression`), checked, or None."""
    if compression is None:
        return None
    if not isinstance(compression, dict) or compression.get("format") != "JPEG":
        raise ValueError(f"'compression' must be an object with format 'JPEG'; got "
                         f"{compression!r}")
    record = {"format": "JPEG"}
    for name in ("block", "rows", "columns", "lattice"):
        if name == "lattice" and compression.get(name) is None:
            record[name] = None  # (not written by every version)
            continue
        record[name] = _integers([compression.get(name)], f"compression {name}")[0]
    jumps = compression.get("jumps")
    if not (isinstance(jumps, list) and len(jumps) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in jumps)):
        raise ValueError(f"'compression' 'jumps' must be two numbers; got {jumps!r}")
    record["jumps"] = tuple(float(v) for v in jumps)
    record = {name: record[name] for name in ("format", "block", "rows", "columns", "jumps",
                                              "lattice")}  # (a fit's order)
    if compression.get("standard_errors") == "clustered by block":
        record["standard_errors"] = "clustered by block"
    if compression.get("searched") is not None:
        record["searched"] = tuple(_integers(compression["searched"], "compression searched"))
    return record


def _prior_record(prior):
    """A kernel file's prior record (a fit's `prior`), checked, or None."""
    if prior is None:
        return None
    if not isinstance(prior, dict):
        raise ValueError(f"'prior' must be an object with a 'laplacian' weight and "
                         f"'chosen_by'; got {prior!r}")
    weight = prior.get("laplacian")
    weights = np.atleast_1d(np.asarray(weight if weight is not None else np.nan,
                                       dtype=object))
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights) \
            or prior.get("chosen_by") not in ("gcv", "given"):
        raise ValueError(f"'prior' must be an object with a 'laplacian' weight and "
                         f"'chosen_by' 'gcv' or 'given'; got {prior!r}")
    return {"laplacian": weight if np.ndim(weight) == 0 else np.array(weight, dtype=float),
            "chosen_by": prior["chosen_by"]}


def _robust_record(robust):
    """A kernel file's robust-fit record (a fit's `robust`), checked, or None."""
    if robust is None:
        return None
    if not isinstance(robust, dict) or robust.get("loss") not in ("huber", "cauchy"):
        raise ValueError(f"'robust' must be an object with loss 'huber' or 'cauchy'; got "
                         f"{robust!r}")
    record = {"loss": robust["loss"]}
    for name in ("scale", "refits", "outliers"):
        value = robust.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"'robust' {name!r} must be a number; got {value!r}")
        record[name] = value
    return record


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _integers(values, name):
    if not isinstance(values, (list, tuple)) or not all(_is_int(v) for v in values):
        raise ValueError(f"{name!r} must be a list of integers; got {values!r}")
    return [int(v) for v in values]


def _scalar(value, name):
    """A number, or a complex one as written by `_plain` ({'real': .., 'imag': ..})."""
    if isinstance(value, dict) and set(value) == {"real", "imag"}:
        return complex(_scalar(value["real"], name), _scalar(value["imag"], name))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number; got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name!r} must be finite; got {value!r}")
    return value


def _bias(value):
    if isinstance(value, list):
        values = [_scalar(v, "bias") for v in value]
        return np.asarray(values, dtype=complex if any(isinstance(v, complex) for v in values)
                          else float)
    return _scalar(value, "bias")


def _numbers(values, name, missing=None):
    """A nested list of numbers (null: `missing`, when allowed) as a float array."""
    def check(value, depth):
        if depth > 32:
            raise ValueError(f"{name!r} is nested more than 32 deep")
        if isinstance(value, list):
            return [check(v, depth + 1) for v in value]
        if value is None and missing is not None:
            return missing
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name!r} must hold numbers; found {value!r}")
        return value

    try:
        array = np.asarray(check(values, 0), dtype=float)
    except ValueError as exc:
        raise ValueError(f"{name!r} is not a rectangular array of numbers "
                         f"({_first_line(exc)})") from None
    if not np.all(np.isfinite(array) | np.isnan(array) & (missing is not None)):
        raise ValueError(f"{name!r} must be finite")
    return array
