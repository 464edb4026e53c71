"""Hostile image and array files: every bit kept, shown as viewers show it, refused on one
line when reading would mislead (several frames) or could not end well (an empty, truncated
or impossibly large file), and integer outputs saturated exactly at the dtype's limits."""

import io

import numpy as np
import pytest

from kernelfit import _io
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
