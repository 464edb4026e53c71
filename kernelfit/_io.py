"""Files for the command line: images in and out (Pillow), kernels and masks as arrays, atomically.

Every reader raises FileError with a one-line message; every writer writes a temporary file
beside the target and renames it, so a failed write never leaves a half-written file.
"""

import contextlib
import json
import os
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
    uint8 and 16-bit ones uint16. An alpha channel is dropped, with a note.
    """
    path = str(path)
    if suffix(path) in ARRAY_SUFFIXES:
        return read_array(path, "image"), []
    from PIL import Image, UnidentifiedImageError

    _check_readable(path)
    try:
        with Image.open(path) as picture:
            picture.load()
            notes = []
            mode = picture.mode
            if mode == "P":
                picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
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
    except OSError as exc:
        raise FileError(f"{path}: cannot read the image: {exc}") from None
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array, notes


def read_array(path, what="array"):
    """A numeric array from .npy, .txt (whitespace) or .csv (commas)."""
    path = str(path)
    _check_readable(path)
    try:
        if suffix(path) == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix(path) in (".txt", ".csv"):
            delimiter = "," if suffix(path) == ".csv" else None
            array = np.loadtxt(path, delimiter=delimiter, ndmin=1)
        else:
            raise FileError(f"{path}: a {what} file must end in "
                            f"{', '.join(ARRAY_SUFFIXES)}")
    except (ValueError, OSError) as exc:
        raise FileError(f"{path}: cannot read a {what}: {exc}") from None
    if array.dtype.kind not in "biufc":
        raise FileError(f"{path}: a {what} must be numeric; got dtype {array.dtype}")
    return array


def read_kernel(path):
    """A kernel file: .npy, .txt/.csv, or kernelfit's .json. Returns (kernel, convention).

    The convention is the one the JSON file records, or None for plain arrays.
    """
    path = str(path)
    if suffix(path) != ".json":
        return read_array(path, "kernel"), None
    _check_readable(path)
    try:
        with open(path) as handle:
            content = json.load(handle)
        kernel = np.asarray(content["kernel"], dtype=float)
        if "kernel_imag" in content:
            kernel = kernel + 1j * np.asarray(content["kernel_imag"], dtype=float)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise FileError(f"{path}: not a kernelfit kernel file ({exc})") from None
    return kernel, content.get("convention")


def _check_readable(path):
    if not os.path.exists(path):
        raise FileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FileError(f"{path}: is a directory, not a file")


def check_output_path(path, inputs=()):
    """Refuse to write onto an input, or into a directory that does not exist."""
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileError(f"{path}: directory {folder} does not exist")
    if os.path.isdir(path):
        raise FileError(f"{path}: is a directory; give a file name")
    for source in inputs:
        if source is not None and os.path.exists(path) and os.path.exists(str(source)) \
                and os.path.samefile(path, str(source)):
            raise FileError(f"{path}: refusing to overwrite an input file")


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside `path`, renamed onto it when the block succeeds."""
    folder, name = os.path.split(os.path.abspath(str(path)))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=suffix(path))
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; a new file is not
    try:
        yield temporary
        os.replace(temporary, str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def write_image(path, array):
    """Write an integer image (uint8 grey or colour, uint16 grey) or any array as .npy."""
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
        raise FileError(f"{path}: Pillow cannot write 16-bit colour images; write .npy "
                        f"instead")
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
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, complex):
        return {"real": _plain(value.real), "imag": _plain(value.imag)}
    return value


def fit_to_dict(fit, extra=None):
    """A KernelFit as a JSON-ready dict: the kernel and every diagnostic."""
    kernel = np.asarray(fit.kernel)
    content = {"kernel": _plain(kernel.real)}
    if np.iscomplexobj(kernel):
        content["kernel_imag"] = _plain(kernel.imag)
    for name in ("convention", "method", "mode", "boundary", "origin", "size", "channels",
                 "channel_axis", "bias", "bias_stderr", "stderr", "residual_rms", "r2",
                 "n_equations", "n_unknowns", "rank", "identifiable", "condition_number",
                 "n_masked", "reg", "n_steps", "stop_reason", "device"):
        content[name] = _plain(getattr(fit, name))
    content.update(extra or {})
    return content
