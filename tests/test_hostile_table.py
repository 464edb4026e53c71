"""The hostile-input table (issue 12): several hundred calls of the library and the command
line with malformed, odd or extreme arguments, files and data, each with what must happen.

Every row either succeeds with a property checked (the kernel recovered, the file written
and equal to what the library computes) or fails with a named exception type, or CLI status
2, whose one-line message matches a pattern naming the offending argument or file. No row
may end in a traceback from inside numpy or scipy, hang, or return garbage silently; no file
may be lost or replaced.
"""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import kernelfit
from kernelfit import kernels
from kernelfit._cli import main

RNG = np.random.default_rng(12)
X = RNG.standard_normal((12, 12))
BOX = kernels.box(3)
Y = kernelfit.convolve(X, BOX)
XI = RNG.integers(0, 50, size=(12, 12))
YI = kernelfit.convolve(XI, BOX)


class Ok:
    """A success, with a property of the result checked by `check(result)`."""

    def __init__(self, check, warns=None, match=None):
        self.check, self.warns, self.match = check, warns, match


class Fails:
    """An exception of type `error` whose message is one line matching `message`."""

    def __init__(self, error, message):
        self.error, self.message = error, message


def recovers(kernel, atol=1e-6):
    return Ok(lambda fit: np.testing.assert_allclose(
        getattr(fit, "kernel", fit), kernel, atol=atol))


def equals(expected, rtol=1e-7):
    return Ok(lambda out: np.testing.assert_allclose(out, expected, rtol=rtol, atol=1e-9))


ROWS = []


def row(name, call, expect):
    ROWS.append(pytest.param(call, expect, id=name))


def fit(*args, **kwargs):
    return lambda: kernelfit.fit_kernel(*args, **kwargs)


def conv(*args, **kwargs):
    return lambda: kernelfit.convolve(*args, **kwargs)


# --- fit_kernel: size -------------------------------------------------------------------------

for value, error, message in [
    (0, ValueError, r"size must be at least 1"),
    (-1, ValueError, r"size must be at least 1"),
    (1.5, TypeError, r"size must be an integer"),
    ("big", ValueError, r"size must be an integer, a sequence of integers, or 'auto'; got 'big'"),
    ("3", ValueError, r"size must be .* or 'auto'; got '3'"),
    ("", ValueError, r"size must be .* or 'auto'; got ''"),
    ((3,), ValueError, r"size must be an integer or a sequence of 2 integers; got \(3,\)"),
    ((3, 3, 3), ValueError, r"size must be an integer or a sequence of 2 integers"),
    ((3.0, 3), ValueError, r"size must be an integer or a sequence of 2 integers"),
    ((3, "3"), ValueError, r"size must be an integer or a sequence of 2 integers"),
    ([], ValueError, r"size must be an integer or a sequence of 2 integers"),
    ((0, 3), ValueError, r"size must be at least 1"),
    ((3, -2), ValueError, r"size must be at least 1"),
    (True, TypeError, r"size must be an integer"),
    (None, TypeError, r"size must be an integer"),
    (10**9, ValueError, r"size .*1000000000.* (larger|exceeds|more)"),
    (10**30, ValueError, r"size .* (larger|exceeds|more)"),
    ((10**9, 3), ValueError, r"size .* (larger|exceeds|more)"),
    (13, ValueError, r"size .*13.* (larger|exceeds|more)"),
    (np.float64(3), TypeError, r"size must be an integer"),
    ({"a": 1}, ValueError, r"size must be an integer or a sequence of 2 integers"),
]:
    row(f"fit-size-{value!r}", fit(X, Y, value), Fails(error, message))
for value in [3, (3, 3), [3, 3], np.int64(3), np.array([3, 3]), np.array(3)]:
    row(f"fit-size-ok-{value!r}", fit(X, Y, value), recovers(BOX))

# --- fit_kernel: choices and flags ------------------------------------------------------------

CHOICES = {
    "mode": (["bogus", "SAME", "", 3, b"same", ["same"], True], r"mode must be one of "
             r"'full', 'same', 'valid'"),
    "boundary": (["bogus", "Edge", "", 1, b"edge", ("edge",), 1.5], r"boundary must be one of "
                 r"'constant', 'fill', 'edge'"),
    "convention": (["bogus", "conv", "", None, 0, b"convolution", ["convolution"]],
                   r"convention must be one of 'convolution', 'correlation'"),
    "channels": (["bogus", "SHARED", "", None, 1, b"shared", ["shared"]],
                 r"channels must be one of 'shared', 'separate', 'full'"),
    "method": (["bogus", "LSTSQ", "", None, 1, b"lstsq"], r"method must be one of 'lstsq'"),
}
for name, (values, message) in CHOICES.items():
    for value in values:
        error = ValueError
        row(f"fit-{name}-{value!r}", fit(X, Y, 3, **{name: value}), Fails(error, message))

for name in ["bias", "checks"]:
    for value in [1, 0, "yes", "False", None, 1.0, [True], np.array([True, False])]:
        row(f"fit-{name}-{value!r}", fit(X, Y, 3, **{name: value}),
            Fails(TypeError, rf"{name} must be True or False"))
    for value in [True, False, np.bool_(True)]:
        row(f"fit-{name}-ok-{value!r}", fit(X, Y, 3, **{name: value}),
            recovers(BOX))

for value in [5, -5, 2, -3, 1.5, "x", True, (0, 1)]:
    error = TypeError if not isinstance(value, int) or isinstance(value, bool) else ValueError
    message = r"channel_axis" if not isinstance(value, tuple) else r"channel_axis"
    row(f"fit-channel_axis-{value!r}", fit(X, Y, 3, channel_axis=value),
        Fails((TypeError, ValueError), message))

for value, error, message in [
    (5, ValueError, r"origin=\(5, 5\) is out of range .* between -1 and 1"),
    (-5, ValueError, r"origin=\(-5, -5\) is out of range"),
    ((0, 2), ValueError, r"origin=\(0, 2\) is out of range"),
    ((1, 1, 1), ValueError, r"origin must be an integer or a sequence of 2 integers"),
    ((1,), ValueError, r"origin must be an integer or a sequence of 2 integers"),
    ("left", ValueError, r"origin must be an integer, a sequence of integers, or 'auto'"),
    (1.5, TypeError, r"origin must be an integer or a sequence of 2 integers"),
    (None, TypeError, r"origin must be an integer or a sequence of 2 integers"),
    (True, TypeError, r"origin must be an integer or a sequence of 2 integers"),
    ((0.0, 0), ValueError, r"origin must be an integer or a sequence of 2 integers"),
    (10**20, ValueError, r"origin=.* is out of range"),
]:
    row(f"fit-origin-{value!r}", fit(X, Y, 3, origin=value), Fails(error, message))
for value in [np.array([0, 0]), np.array(0), np.int8(0), (np.int64(0), 0)]:
    row(f"fit-origin-ok-{value!r}", fit(X, Y, 3, origin=value), recovers(BOX))
row("fit-origin-array-2d", fit(X, Y, 3, origin=np.zeros((2, 2), int)),
    Fails(ValueError, r"origin must be an integer or a sequence of 2 integers"))
row("fit-size-array-2d", fit(X, Y, np.full((2, 2), 3)),
    Fails(ValueError, r"size must be an integer or a sequence of 2 integers"))
row("fit-size-array-float", fit(X, Y, np.array([3.0, 3.0])),
    Fails(ValueError, r"size must be an integer or a sequence of 2 integers"))
row("fit-origin-valid-mode", fit(X, Y[1:-1, 1:-1], 3, origin=1),
    Fails(ValueError, r"origin must be 0 for mode='valid'"))

for value, error, message in [
    (np.ones((5, 5), bool), ValueError, r"mask"),
    (np.ones((12, 13), bool), ValueError, r"mask"),
    (np.ones(12, bool), ValueError, r"mask"),
    (np.ones((12, 12)), TypeError, r"mask must be a boolean array"),
    (np.ones((12, 12), int), TypeError, r"mask must be a boolean array"),
    (np.full((12, 12), "yes"), TypeError, r"mask must be a boolean array; got dtype <U3"),
    ([[True] * 12] * 11 + [[True] * 11], TypeError, r"mask must be a boolean array"),
    (True, ValueError, r"mask"),
    ("all", TypeError, r"mask must be a boolean array"),
    (np.zeros((12, 12), bool), ValueError, r"no usable (output )?samples|mask"),
    (np.ones((12, 12, 1), bool), ValueError, r"mask"),
    (np.ones((0, 0), bool), ValueError, r"mask"),
    ([np.ones((12, 12), bool)] * 2, ValueError, r"mask"),
    (object(), TypeError, r"mask must be a boolean array"),
]:
    row(f"fit-mask-{type(value).__name__}-{getattr(value, 'shape', '')}-{len(ROWS)}",
        fit(X, Y, 3, mask=value), Fails(error, message))
row("fit-mask-ok", fit(X, Y, 3, mask=np.ones((12, 12), bool)), recovers(BOX))
row("fit-mask-list-ok", fit(X, Y, 3, mask=np.ones((12, 12), bool).tolist()), recovers(BOX))

for method, value, error, message in [
    ("lstsq", {"bogus": 1}, ValueError, r"bogus"),
    ("lstsq", {"rcond": 1e-3}, ValueError, r"rcond"),
    ("lstsq", "x", TypeError, r"options must be a dict"),
    ("lstsq", [("rcond", 1)], TypeError, r"options must be a dict"),
    ("lstsq", 1, TypeError, r"options must be a dict"),
    ("pinv", {"rcond": "x"}, (TypeError, ValueError), r"rcond"),
    ("pinv", {"rcond": -1.0}, ValueError, r"rcond"),
    ("pinv", {"rcond": float("nan")}, ValueError, r"rcond"),
    ("pinv", {"reg": 1.0}, ValueError, r"reg"),
    ("ridge", {}, ValueError, r"reg"),
    ("ridge", None, ValueError, r"reg"),
    ("ridge", {"reg": -1.0}, ValueError, r"reg"),
    ("ridge", {"reg": "x"}, (TypeError, ValueError), r"reg"),
    ("ridge", {"reg": float("inf")}, ValueError, r"reg"),
    ("ridge", {"reg": 1.0, "rcond": 1.0}, ValueError, r"rcond"),
    ("ridge", {1: 2}, (TypeError, ValueError), r"options|1"),
]:
    row(f"fit-options-{method}-{value!r}", fit(X, Y, 3, method=method, options=value),
        Fails(error, message))
row("fit-options-ridge-ok", fit(X, Y, 3, method="ridge", options={"reg": 1e-12}),
    recovers(BOX, 1e-5))
row("fit-options-pinv-ok", fit(X, Y, 3, method="pinv"), recovers(BOX))

for value, error, message in [
    ("bogus", ValueError, r"saturated must be one of 'auto'"),
    ((1,), ValueError, r"saturated must be 'auto', True, False or a \(low, high\) pair"),
    ((5, 1), ValueError, r"saturated limits must satisfy low < high"),
    ((float("nan"), 1), ValueError, r"saturated low must be finite"),
    (("a", "b"), TypeError, r"saturated low must be a real number"),
    (1.5, ValueError, r"saturated must be 'auto', True, False"),
    (None, ValueError, r"saturated must be 'auto', True, False"),
]:
    row(f"fit-saturated-{value!r}", fit(X, Y, 3, saturated=value), Fails(error, message))

for value in [0, -1, 2.5, "x", None, True]:
    row(f"fit-max_size-{value!r}", fit(X, Y, "auto", max_size=value),
        Fails(ValueError, r"max_size must be a positive integer"))
row("fit-max_size-huge", fit(X, Y, "auto", max_size=10**30),
    Ok(lambda f: np.testing.assert_allclose(f.kernel, BOX, atol=1e-8), kernelfit.ModelWarning,
       r"reaches the edge of the largest support the data allow"))

for value, error, message in [
    ("x", TypeError, r"fillvalue must be a real or complex number; got 'x'"),
    (None, TypeError, r"fillvalue must be a real or complex number"),
    (float("nan"), ValueError, r"fillvalue must be finite"),
    (float("inf"), ValueError, r"fillvalue must be finite"),
    ([0], TypeError, r"fillvalue must be a real or complex number"),
    (True, TypeError, r"fillvalue must be a real or complex number"),
]:
    row(f"fit-fillvalue-{value!r}", fit(X, Y, 3, boundary="fill", fillvalue=value),
        Fails(error, message))

for value in ["yes", 1, 0.5, [1]]:
    row(f"fit-progress-{value!r}", fit(X, Y, 3, progress=value),
        Fails((TypeError, ValueError), r"progress must be"))


# --- fit_kernel: the data ---------------------------------------------------------------------

BAD_DATA = [
    ("empty", np.zeros((0, 0)), ValueError, r"{} must not be empty"),
    ("empty-rows", np.zeros((0, 12)), ValueError, r"{} must not be empty"),
    ("0-d", np.float64(3.0), ValueError, r"{} must have at least 1 dimension"),
    ("scalar", 3.0, ValueError, r"{} must have at least 1 dimension"),
    ("none", None, TypeError, r"{} must be a numeric array"),
    ("object", np.full((12, 12), 1.0, dtype=object), TypeError,
     r"{} must be a numeric array .*got dtype object"),
    ("strings", np.full((12, 12), "a"), TypeError, r"{} must be a numeric array .*got dtype <U1"),
    ("bytes", np.full((12, 12), b"a"), TypeError, r"{} must be a numeric array"),
    ("str", "image.png", TypeError, r"{} must be a numeric array"),
    ("datetime", np.zeros((12, 12), "datetime64[s]"), TypeError, r"{} must be a numeric array"),
    ("ragged", [[1.0] * 12] * 11 + [[1.0] * 11], TypeError, r"{} must be a numeric array-like"),
    ("dict", {"a": 1}, TypeError, r"{} must be a numeric array"),
    ("nan", np.where(np.eye(12, dtype=bool), np.nan, X), ValueError,
     r"{} contains NaN or infinite values"),
    ("inf", np.where(np.eye(12, dtype=bool), np.inf, X), ValueError,
     r"{} contains NaN or infinite values"),
    ("-inf", np.where(np.eye(12, dtype=bool), -np.inf, X), ValueError,
     r"{} contains NaN or infinite values"),
    ("huge", X * 1e300, ValueError, r"{} has values up to .* overflow float64"),
    ("tiny", X * 1e-300, ValueError, r"{} has values of at most .* underflow float64"),
    ("complex-nan", X + 1j * np.where(np.eye(12, dtype=bool), np.nan, 0), ValueError,
     r"{} contains NaN or infinite values"),
    ("float16-inf", np.full((12, 12), np.inf, np.float16), ValueError,
     r"{} contains NaN or infinite values"),
    ("1-d", X[0], ValueError, r"{}"),
    ("3-d", X[..., None], ValueError, r"{}"),
    ("shape-9x9", X[:9, :9], ValueError, r"{}"),
    ("shape-12x13", np.hstack([X, X[:, :1]]), ValueError, r"{}"),
    ("too-small", X[:2, :2], ValueError, r"{}"),
]
for side in ["input", "output"]:
    for label, value, error, message in BAD_DATA:
        args = (value, Y) if side == "input" else (X, value)
        if label in ("1-d", "3-d", "shape-9x9", "shape-12x13", "too-small"):
            message = r"(input|output)"
        row(f"fit-{side}-{label}", fit(*args, 3), Fails(error, message.format(side)))

DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]
for dtype in DTYPES:
    if dtype == "bool":
        xd = XI % 2 == 1
    elif dtype.startswith(("int", "uint")):
        xd = XI.astype(dtype)
    else:
        xd = XI.astype(dtype)
    row(f"fit-input-{dtype}", fit(xd, kernelfit.convolve(xd, BOX), 3),
        recovers(BOX, 1e-3 if dtype in ("float16", "complex64", "float32") else 1e-8))
for dtype in ["int16", "int32", "int64", "uint16", "float32", "float64"]:
    yd = np.round(YI * 9).astype(dtype)
    row(f"fit-output-{dtype}", fit(XI, yd, 3), recovers(np.ones((3, 3)), 1e-6))
# longdouble is computed in float64 (complex128), as documented for every dtype
row("fit-input-longdouble", fit(X.astype(np.longdouble), Y, 3), recovers(BOX, 1e-10))
row("fit-output-longdouble", fit(X, Y.astype(np.longdouble), 3), recovers(BOX, 1e-10))
row("fit-input-clongdouble", fit(X.astype(np.clongdouble), Y, 3), recovers(BOX, 1e-10))
row("fit-lists", fit(X.tolist(), Y.tolist(), 3), recovers(BOX))
row("fit-tuples", fit(tuple(map(tuple, X)), Y, 3), recovers(BOX))
row("fit-noncontiguous", fit(np.asfortranarray(X), Y[:, :], 3), recovers(BOX))
row("fit-readonly", fit(np.require(X, requirements="C").copy().view().__array__(), Y, 3),
    recovers(BOX))
row("fit-pairs", fit([X, X.T], [Y, kernelfit.convolve(X.T, BOX)], 3), recovers(BOX))
row("fit-pairs-tuple", fit((X, X.T), (Y, kernelfit.convolve(X.T, BOX)), 3), recovers(BOX))
row("fit-pairs-lengths", fit([X, X], [Y], 3), Fails(ValueError, r"input.*output|pairs"))
row("fit-pairs-empty", fit([], [], 3), Fails(ValueError, r"input|pairs"))
row("fit-pairs-vs-array", fit([X, X], Y, 3), Fails((ValueError, TypeError), r"input|output"))
row("fit-pairs-shapes", fit([X, X[:10, :10]], [Y, kernelfit.convolve(X[:10, :10], BOX)], 3),
    recovers(BOX))
row("fit-pairs-ndim", fit([X, X[0]], [Y, Y[0]], 3),
    Fails(ValueError, r"input\[1\] has 1 dimensions and input\[0\] 2"))
row("fit-pairs-nan", fit([X, X], [Y, np.full_like(Y, np.nan)], 3),
    Fails(ValueError, r"output\[1\] contains NaN"))
row("fit-pairs-object", fit([X, np.full((12, 12), None)], [Y, Y], 3),
    Fails(TypeError, r"input\[1\] must be a numeric array"))
row("fit-output-nan-masked", fit(X, np.where(np.eye(12, dtype=bool), np.nan, Y), 3,
                                 mask=~np.eye(12, dtype=bool)), recovers(BOX))
row("fit-output-constant", fit(X, np.zeros_like(Y), 3), recovers(np.zeros((3, 3))))
row("fit-input-constant", fit(np.ones((12, 12)), Y, 3),
    Ok(lambda f: None, kernelfit.IdentifiabilityWarning, r"."))


def _memmap(tmp, array, name):
    path = os.path.join(tmp, name)
    m = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    m[...] = array
    m.flush()
    return np.load(path, mmap_mode="r")


row("fit-memmap", lambda tmp: kernelfit.fit_kernel(_memmap(tmp, X, "x.npy"),
                                                   _memmap(tmp, Y, "y.npy"), 3), recovers(BOX))
row("fit-memmap-nan", lambda tmp: kernelfit.fit_kernel(
    _memmap(tmp, X, "x.npy"), _memmap(tmp, np.full_like(Y, np.nan), "y.npy"), 3),
    Fails(ValueError, r"output contains NaN"))
row("fit-memmap-uint8", lambda tmp: kernelfit.fit_kernel(
    _memmap(tmp, XI.astype(np.uint8), "x.npy"), YI, 3), recovers(BOX))

# colour
XC = RNG.standard_normal((12, 12, 3))
YC = kernelfit.convolve(XC, BOX, channel_axis=-1)
for value, message in [(3, r"channel_axis=3 is out of range .* \(valid: -3 to 2\)"),
                       (-4, r"channel_axis=-4 is out of range"),
                       ("x", r"channel_axis must be None or an integer"),
                       (1.0, r"channel_axis must be None or an integer")]:
    row(f"fit-colour-channel_axis-{value!r}", fit(XC, YC, 3, channel_axis=value),
        Fails((TypeError, ValueError), message))
row("fit-colour-ok", fit(XC, YC, 3, channel_axis=-1), recovers(BOX))
row("fit-colour-separate", fit(XC, YC, 3, channel_axis=-1, channels="separate"),
    recovers(np.stack([BOX] * 3, -1)))
row("fit-colour-no-axis-separate", fit(XC, YC, 3, channels="separate"),
    Fails(ValueError, r"channels='separate' needs channel_axis"))
row("fit-colour-channels-mismatch", fit(XC, YC[..., :2], 3, channel_axis=-1),
    Fails(ValueError, r"output|channel"))
row("fit-colour-1d", fit(X[0], Y[0], 1, channel_axis=0),
    Fails(ValueError, r"input must have at least 2 dimensions with a channel_axis"))


# --- convolve ---------------------------------------------------------------------------------

for label, value, error, message in BAD_DATA:
    if label in ("1-d", "3-d", "shape-9x9", "shape-12x13", "too-small", "huge", "tiny"):
        continue
    row(f"convolve-image-{label}", conv(value, BOX), Fails(error, message.format("image")))
    row(f"convolve-kernel-{label}", conv(X, value), Fails(error, message.format("kernel")))
for label, kernel, message in [
    ("3-d-kernel", np.ones((3, 3, 3)), r"kernel"),
    ("1-d-kernel", np.ones(3), r"kernel"),
    ("too-big-valid", np.ones((13, 13)), r"kernel"),
]:
    mode = "valid" if label == "too-big-valid" else "same"
    row(f"convolve-{label}", conv(X, kernel, mode=mode), Fails(ValueError, message))
for name, values, message in [
    ("mode", ["bogus", "SAME", 3, None, ["same"]], r"mode must be one of 'full', 'same', 'valid'"),
    ("boundary", ["bogus", "EDGE", 3, None, "auto"], r"boundary must be one of"),
    ("convention", ["bogus", None, 3, "Correlation"], r"convention must be one of"),
    ("channels", ["bogus", 3, "SHARED"], r"channels"),
]:
    for value in values:
        row(f"convolve-{name}-{value!r}", conv(X, BOX, **{name: value}),
            Fails((ValueError, TypeError), message))
for value, message in [(5, r"origin=\(5, 5\) is out of range"), ((1, 1, 1), r"origin must be"),
                       ("x", r"origin must be"), (1.5, r"origin must be"),
                       (None, r"origin must be")]:
    row(f"convolve-origin-{value!r}", conv(X, BOX, origin=value),
        Fails((ValueError, TypeError), message))
row("convolve-origin-full", conv(X, BOX, mode="full", origin=1),
    Fails(ValueError, r"origin must be 0 for mode='full'"))
for value, error, message in [("x", TypeError, r"fillvalue must be"),
                              (float("nan"), ValueError, r"fillvalue must be finite"),
                              (None, TypeError, r"fillvalue must be")]:
    row(f"convolve-fillvalue-{value!r}", conv(X, BOX, fillvalue=value), Fails(error, message))
for value in [2, -3, 1.5, "x"]:
    row(f"convolve-channel_axis-{value!r}", conv(X, BOX, channel_axis=value),
        Fails((ValueError, TypeError), r"channel_axis"))
row("convolve-channels-no-axis", conv(X, BOX, channels="separate"),
    Fails(ValueError, r"channels"))
row("convolve-channels-wrong-kernel", conv(XC, np.ones((3, 3, 2)), channel_axis=-1),
    Fails(ValueError, r"kernel"))
import scipy.signal  # noqa: E402

for dtype in DTYPES:
    xd = (XI % 2 == 1) if dtype == "bool" else XI.astype(dtype)
    row(f"convolve-image-{dtype}", conv(xd, BOX),
        equals(scipy.signal.convolve2d(xd.astype(complex if "complex" in dtype else float), BOX,
                                       mode="same"), 1e-3 if dtype == "float16" else 1e-6))
    row(f"convolve-kernel-{dtype}", conv(X, (np.ones((3, 3)) == 1) if dtype == "bool"
                                         else np.ones((3, 3), dtype)),
        equals(scipy.signal.convolve2d(X, np.ones((3, 3)), mode="same"),
               1e-3 if dtype == "float16" else 1e-6))
row("convolve-longdouble", conv(X.astype(np.longdouble), BOX), equals(Y, 1e-12))
row("convolve-kernel-longdouble", conv(X, BOX.astype(np.longdouble)), equals(Y, 1e-12))
row("convolve-lists", conv(X.tolist(), BOX.tolist()),
    equals(scipy.signal.convolve2d(X, BOX, mode="same")))
row("convolve-1x1", conv(X, [[2.0]]), equals(2 * X))
row("convolve-1-d", conv(np.arange(5.0), [1.0, 1.0]),
    equals(scipy.signal.convolve(np.arange(5.0), [1.0, 1.0], mode="same")))
row("convolve-memmap", lambda tmp: kernelfit.convolve(_memmap(tmp, X, "x.npy"), BOX),
    equals(Y))
row("correlate-bogus", lambda: kernelfit.correlate(X, BOX, mode="bogus"),
    Fails(ValueError, r"mode must be one of"))


# --- identify ---------------------------------------------------------------------------------

def ident(*args, **kwargs):
    return lambda: kernelfit.identify(*args, **kwargs)


def names(name):
    return Ok(lambda result: (result.name == name) or pytest.fail(f"{result.name} != {name}"))


row("identify-zeros", ident(np.zeros((3, 3))), names("zero"))
row("identify-zeros-1x1", ident(np.zeros((1, 1))), names("zero"))
row("identify-negative-1x1", ident(-np.ones((1, 1))), Ok(lambda r: None))
row("identify-1x3", ident(np.ones((1, 3)) / 3), names("box"))
row("identify-1x1", ident(np.ones((1, 1))), names("identity"))
row("identify-1-element-1d", ident(np.ones(1)), names("identity"))
row("identify-scalar", ident(np.float64(1.0)), Fails(ValueError, r"kernel must have at least"))
row("identify-empty", ident(np.zeros((0, 3))), Fails(ValueError, r"kernel must not be empty"))
row("identify-nan", ident(np.full((3, 3), np.nan)), Fails(ValueError, r"kernel contains NaN"))
row("identify-inf", ident(np.where(np.eye(3, dtype=bool), np.inf, 1.0)),
    Fails(ValueError, r"kernel contains NaN"))
row("identify-huge", ident(BOX * 1e300),
    Fails(ValueError, r"kernel's largest magnitude is 1\.11e\+299; identify takes kernels "
                      r"between 1e-50 and 1e\+50 \(rescale it\)"))
row("identify-large", ident(BOX * 1e35), names("box"))
row("identify-large-random", ident(RNG.standard_normal((5, 5)) * 1e39), Ok(lambda r: None))
row("identify-1e60", ident(BOX * 1e60), Fails(ValueError, r"kernel's largest magnitude is"))
row("identify-tiny", ident(BOX * 1e-300),
    Fails(ValueError, r"kernel's largest magnitude is 1\.11e-301; identify takes kernels "
                      r"between 1e-50 and 1e\+50 \(rescale it\)"))
row("identify-small", ident(BOX * 1e-45), names("box"))
row("identify-subnormal", ident(BOX * 1e-320), Fails(ValueError, r"kernel's largest magnitude"))
row("identify-strings", ident(np.full((3, 3), "a")), Fails(TypeError, r"kernel must be numeric|kernel must be a numeric"))
row("identify-object", ident(np.full((3, 3), None)), Fails(TypeError, r"kernel must be a numeric"))
row("identify-ragged", ident([[1, 2], [3]]), Fails(TypeError, r"kernel must be a numeric"))
row("identify-none", ident(None), Fails(TypeError, r"kernel must be a numeric"))
row("identify-complex", ident(BOX + 0j), names("box"))
row("identify-bool", ident(np.ones((3, 3), bool)), names("box"))
row("identify-int", ident(np.ones((3, 3), int)), names("box"))
row("identify-3d", ident(np.ones((3, 3, 3)) / 27), Ok(lambda r: None))
row("identify-longdouble", ident(BOX.astype(np.longdouble)), names("box"))
row("identify-clongdouble", ident(BOX.astype(np.clongdouble)), names("box"))
row("identify-sobel", ident(kernels.sobel("x")), names("sobel"))
for value, error, message in [(0, ValueError, r"tolerance must be positive; got 0"),
                              (-1, ValueError, r"tolerance must be positive"),
                              (float("nan"), ValueError, r"tolerance must be finite"),
                              (float("inf"), ValueError, r"tolerance must be finite"),
                              ("x", TypeError, r"tolerance must be a real number; got 'x'"),
                              ([1], TypeError, r"tolerance must be a real number"),
                              (True, TypeError, r"tolerance must be a real number")]:
    row(f"identify-tolerance-{value!r}", ident(BOX, tolerance=value), Fails(error, message))
for value, error, message in [
    (np.ones((2, 2)), ValueError, r"stderr must have the kernel's shape"),
    (-np.ones((3, 3)), ValueError, r"stderr must be non-negative"),
    (np.full((3, 3), "a"), TypeError, r"stderr must be an array of real numbers"),
    ("x", TypeError, r"stderr must be an array of real numbers"),
    ([[1, 2], [3]], TypeError, r"stderr must be an array of real numbers"),
    (np.ones((3, 3)) * 1j, TypeError, r"stderr must be an array of real numbers"),
]:
    row(f"identify-stderr-{len(ROWS)}", ident(BOX, stderr=value), Fails(error, message))
row("identify-stderr-nan", ident(BOX, stderr=np.where(np.eye(3, dtype=bool), np.nan, 1e-4)),
    names("box"))
row("identify-stderr-all-nan", ident(BOX, stderr=np.full((3, 3), np.nan)), names("box"))
row("identify-stderr-ok", ident(BOX, stderr=np.full((3, 3), 1e-3)), names("box"))
for value, error, message in [(5, ValueError, r"origin=\(5, 5\) is out of range"),
                              ((1, 1, 1), ValueError, r"origin must be"),
                              ("x", (TypeError, ValueError), r"origin"),
                              (1.5, TypeError, r"origin")]:
    row(f"identify-origin-{value!r}", ident(BOX, origin=value), Fails(error, message))
for value in ["bogus", 1, "CONVOLUTION"]:
    row(f"identify-convention-{value!r}", ident(BOX, convention=value),
        Fails(ValueError, r"convention must be one of"))


row("convolve-origin-array", conv(X, BOX, origin=np.array([0, 0])), equals(Y))
row("convolve-origin-array-0d", conv(X, BOX, origin=np.array(0)), equals(Y))
row("convolve-origin-array-2d", conv(X, BOX, origin=np.zeros((2, 2), int)),
    Fails(ValueError, r"origin must be an integer or a sequence of 2 integers; got \[\[0, 0\]"))
row("identify-origin-array-2d", ident(BOX, origin=np.zeros((2, 2), int)),
    Fails(ValueError, r"origin must be an integer or a sequence of 2 integers"))
for name in ["mode", "boundary", "convention"]:
    row(f"convolve-{name}-array", conv(X, BOX, **{name: np.zeros((20, 20))}),
        Fails(ValueError, rf"{name} must be one of .*got array\(\[\[0\., 0\., .*\.\.\.$"))
row("convolve-fillvalue-array", conv(X, BOX, fillvalue=np.zeros((20, 20))),
    Fails(TypeError, r"fillvalue must be a real or complex number; got array"))
row("fit-bias-array", fit(X, Y, 3, bias=np.zeros((20, 20), bool)),
    Fails(TypeError, r"bias must be True or False"))


# a large array where a word or a number belongs: one line, naming the argument
BIG = np.zeros((20, 20))
for name in ["mode", "boundary", "fillvalue", "convention", "origin", "bias", "channel_axis",
             "channels", "mask", "saturated", "method", "options", "max_size", "checks",
             "progress"]:
    row(f"fit-{name}-big-array", fit(X, Y, 3, **{name: BIG}),
        Fails((TypeError, ValueError), rf"^{name}\b|\b{name} "))
row("fit-size-big-array", fit(X, Y, BIG), Fails((TypeError, ValueError), r"^size "))
for name in ["mode", "boundary", "fillvalue", "convention", "origin", "channel_axis",
             "channels"]:
    row(f"convolve-{name}-big-array", conv(X, BOX, **{name: BIG}),
        Fails((TypeError, ValueError), rf"^{name}\b|\b{name} "))
for name in ["tolerance", "convention", "stderr", "origin"]:
    row(f"identify-{name}-big-array", ident(BOX, **{name: BIG}),
        Fails((TypeError, ValueError), rf"^{name}\b|\b{name} "))


# --- concurrency and memory -------------------------------------------------------------------

def _threads(function, n=6):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(function, range(n)))


def _all_recover(results):
    for result in results:
        np.testing.assert_allclose(result.kernel, BOX, atol=1e-8)


row("threads-fit", lambda: _threads(lambda i: kernelfit.fit_kernel(X, Y, 3)),
    Ok(_all_recover))
row("threads-fit-auto", lambda: _threads(lambda i: kernelfit.fit_kernel(
    np.roll(XC[..., 0], i), kernelfit.convolve(
        np.roll(XC[..., 0], i), BOX), "auto", max_size=3), 4),
    Ok(lambda results: [np.testing.assert_allclose(r.kernel, BOX, atol=1e-8) for r in results]))
row("threads-convolve", lambda: _threads(lambda i: kernelfit.convolve(X, BOX)),
    Ok(lambda results: [np.testing.assert_array_equal(r, results[0]) for r in results]))
row("threads-identify", lambda: _threads(lambda i: kernelfit.identify(BOX).name),
    Ok(lambda names: names == ["box"] * 6 or pytest.fail(str(names))))
row("threads-memmap", lambda tmp: (lambda m: _threads(lambda i: kernelfit.fit_kernel(
    m, Y, 3)))(_memmap(tmp, X, "shared.npy")), Ok(_all_recover))


def _cli_same_output(tmp):
    """Several `apply` commands writing one file at once: one complete file, no temporary."""
    np.save(os.path.join(tmp, "x.npy"), X)
    target = os.path.join(tmp, "o.npy")
    statuses = _threads(lambda i: main(["apply", os.path.join(tmp, "x.npy"), "box:size=3",
                                        "--float", "-o", target, "-q"]), 4)
    assert statuses == [0] * 4, statuses
    assert not [p for p in os.listdir(tmp) if p.startswith(".")]
    return np.load(target)


row("threads-cli-same-output", _cli_same_output, equals(Y))


def _low_memory(call, available):
    from unittest import mock

    import kernelfit._fit

    def run():
        with mock.patch.object(kernelfit._fit, "available_memory", lambda: available):
            return call()
    return run


X60 = RNG.standard_normal((60, 60))
for size, available in [(25, 2**20), (41, 2**16), ((3, 41), 2**12)]:
    row(f"memory-fit-{size}", _low_memory(fit(X60, X60, size), available),
        Fails(MemoryError, r"need about .* GiB .* pass a smaller size$"))
row("memory-fit-auto", _low_memory(fit(X60, X60, "auto", max_size=15), 2**12),
    Fails(MemoryError, r"size='auto' searches up to .* or max_size$"))
row("memory-fit-ok", _low_memory(fit(X, Y, 3), 2**30), recovers(BOX))
row("memory-convolve-huge-kernel", conv(X[:2, :2], np.ones((2, 10**6)), mode="valid"),
    Fails(ValueError, r"kernel"))


# --- the command line -------------------------------------------------------------------------

class Cli:
    """argv with {names} of the fixture's files; status; stderr pattern (status 2) or a check
    of the files written (status 0)."""

    def __init__(self, argv, status, message=None, check=None):
        self.argv, self.status, self.message, self.check = argv, status, message, check


def cli(name, argv, status, message=None, check=None):
    ROWS.append(pytest.param("cli", Cli(argv.split(), status, message, check), id=f"cli-{name}"))


HOSTILE_FILES = {
    # name: (content writer, stderr pattern)
    "missing": (None, r"{path}.*(does not exist|no such file|not found)"),
    "dir": ("dir", r"{path}.*(is a directory|not a (regular )?file)"),
    "empty": (b"", r"{path}: is empty \(0 bytes\)"),
    "garbage": (b"\x00\x01garbage\xff" * 10, r"{path}"),
    "truncated": ("truncated", r"{path}"),
    "text-junk": ("a,b,c\n1,2\n", r"{path}"),
}
SUFFIXES = {"fit-input": ".png", "fit-output": ".png", "fit-mask": ".png",
            "apply-image": ".png", "apply-kernel": ".npy", "identify-kernel": ".npy"}


def hostile_argv(slot, path):
    return {"fit-input": f"fit {path} {{after}} --size 3 -o {{tmp}}/k.npy",
            "fit-output": f"fit {{before}} {path} --size 3 -o {{tmp}}/k.npy",
            "fit-mask": f"fit {{before}} {{after}} --size 3 --mask {path} -o {{tmp}}/k.npy",
            "apply-image": f"apply {path} box:size=3 -o {{tmp}}/o.png",
            "apply-kernel": f"apply {{before}} {path} -o {{tmp}}/o.png",
            "identify-kernel": f"identify {path}"}[slot]


for slot, suffix in SUFFIXES.items():
    for kind in HOSTILE_FILES:
        for ext in sorted({suffix, ".npy", ".png", ".json", ".txt"}):
            if kind in ("missing", "dir") and ext != suffix:
                continue
            if slot.startswith(("fit", "apply-image")) and ext == ".json":
                continue
            if slot.endswith("kernel") and ext == ".png":
                continue
            path = f"{{tmp}}/{kind}{ext}"
            cli(f"{slot}-{kind}{ext}", hostile_argv(slot, path), 2, ("hostile", kind, ext))
for slot in ["fit-input", "fit-output", "fit-mask", "apply-image"]:  # read by content
    cli(f"{slot}-suffix", hostile_argv(slot, "{before_xyz}"), 0)
for slot in ["apply-kernel", "identify-kernel"]:
    cli(f"{slot}-suffix", hostile_argv(slot, "{before_xyz}"), 2, r"before\.xyz")

for flag, values in [
    ("--size", ["0", "-1", "1.5", "x", "3x", "3x3x3", "x3", "3x0", "99999999999", "31",
                "", "3y3", "auto3"]),
    ("--origin", ["x", "1.5", "5", "1x1x1", "9x9", "--"]),
    ("--max-size", ["0", "-1", "x", "2.5"]),
    ("--mode", ["bogus", "SAME"]),
    ("--boundary", ["bogus"]),
    ("--convention", ["conv"]),
    ("--method", ["bogus"]),
    ("--color", ["purple"]),
]:
    for value in values:
        extra = " --size auto" if flag == "--max-size" else (
            "" if flag == "--size" else " --size 3")
        argv = f"fit {{before}} {{after}}{extra} {flag} {value}".split()
        if value == "":
            argv = ["fit", "{before}", "{after}", flag, ""]
        if value == "--":
            argv = ["fit", "{before}", "{after}", "--size", "3", f"{flag}=--"]
        ROWS.append(pytest.param("cli", Cli(argv, 2, re.escape(flag.lstrip("-").split("-")[0])
                                            if flag != "--color" else r"color"),
                                 id=f"cli-fit{flag}={value!r}"))
for value, message in [("x", r"reg"), ("-1", r"reg"), ("nan", r"reg"), ("inf", r"reg")]:
    cli(f"fit-reg-{value}", f"fit {{before}} {{after}} --size 3 --method ridge --reg {value}",
        2, message)
cli("fit-reg-without-ridge", "fit {before} {after} --size 3 --reg 1", 2, r"--reg")
cli("fit-ridge-without-reg", "fit {before} {after} --size 3 --method ridge", 2, r"--reg")
cli("fit-mismatched-sizes", "fit {before} {small} --size 3", 2, r"(input|output|shape)")
cli("fit-same-file", "fit {before} {before} --size 3 -o {before}", 2,
    r"refusing to overwrite an input file")
for value, message in [("nosuch:size=3", r"nosuch"), ("box:size=x", r"size"),
                       ("box:bogus=1", r"bogus"), ("box:size=0", r"size"),
                       ("box:size=-3", r"size"), ("box:", r"box|size"),
                       (":size=3", r"kernel"), ("gaussian:sigma=nan", r"sigma"),
                       ("gaussian:sigma=-1", r"sigma"), ("box:size=3,size=5", r"size"),
                       ("box:size", r"size|key=value")]:
    cli(f"apply-named-{value}", f"apply {{before}} {value} -o {{tmp}}/o.png", 2, message)
for flag, value in [("--mode", "bogus"), ("--boundary", "auto"), ("--convention", "x"),
                    ("--origin", "9"), ("--origin", "x"), ("--origin", "1x1x1")]:
    cli(f"apply{flag}={value}", f"apply {{before}} box:size=3 {flag} {value} -o {{tmp}}/o.png",
        2, re.escape(flag.lstrip("-")))
for value in ["0", "-1", "x", "nan"]:
    cli(f"identify-tolerance-{value}", f"identify {{kernel}} --tolerance {value}", 2,
        r"tolerance")
cli("identify-zeros", "identify {zeros}", 0)  # "zero kernel (all coefficients are 0)": a match
cli("identify-nan", "identify {nan_kernel}", 2, r"nan\.npy.*NaN|NaN")
cli("apply-output-dir", "apply {before} box:size=3 -o {tmp}/adir", 2, r"adir|must end in")
cli("apply-output-missing-dir", "apply {before} box:size=3 -o {tmp}/none/o.png", 2,
    r"directory .*none does not exist")
cli("apply-output-is-input", "apply {before} box:size=3 -o {before}", 2,
    r"refusing to overwrite an input file|before\.png")


def _written(name, expected, atol=1e-6):
    def check(files):
        path = files["tmp"] / name
        array = np.load(path) if name.endswith(".npy") else np.asarray(Image.open(path))
        np.testing.assert_allclose(array, expected(files), atol=atol)
    return check


def _unreadable(name, argv):
    ROWS.append(pytest.param("cli", Cli(argv.split(), 2,
                                                  r"(?=.*unreadable\.png)(?=.*ermission)"),
                             id=f"cli-{name}", marks=pytest.mark.skipif(
                                 os.geteuid() == 0, reason="root reads any file")))


for slot in ["fit-input", "fit-output", "fit-mask", "apply-image"]:
    _unreadable(f"{slot}-unreadable", hostile_argv(slot, "{unreadable}"))


cli("fit-ok-npy", "fit {before} {after} --size 3 --boundary none -o {tmp}/k.npy -q", 0,
    check=_written("k.npy", lambda f: kernels.box(3), atol=1e-3))
cli("fit-ok-npy-arrays", "fit {xnpy} {ynpy} --size 3 -o {tmp}/k.npy -q", 0,
    check=_written("k.npy", lambda f: kernels.box(3)))
cli("apply-ok-float", "apply {xnpy} box:size=3 --float -o {tmp}/o.npy -q", 0,
    check=_written("o.npy", lambda f: kernelfit.convolve(X, BOX)))
cli("apply-ok-kernel-file", "apply {xnpy} {boxnpy} --float -o {tmp}/o.npy -q", 0,
    check=_written("o.npy", lambda f: kernelfit.convolve(X, BOX)))
cli("identify-ok", "identify {kernel} -q", 0)


# --- running the rows -------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    image = (RNG.random((30, 30)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "before.png")
    Image.fromarray(np.clip(np.round(kernelfit.convolve(image, BOX)), 0, 255).astype(
        np.uint8)).save(tmp_path / "after.png")
    Image.fromarray(image[:20, :20]).save(tmp_path / "small.png")
    (tmp_path / "before.xyz").write_bytes((tmp_path / "before.png").read_bytes())
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "box.npy", BOX)
    np.save(tmp_path / "kernel.npy", kernels.gaussian(5, 1.0))
    np.save(tmp_path / "zeros.npy", np.zeros((3, 3)))
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan))
    os.mkdir(tmp_path / "adir")
    Image.fromarray(image).save(tmp_path / "unreadable.png")
    os.chmod(tmp_path / "unreadable.png", 0)
    for kind, (content, _) in HOSTILE_FILES.items():
        for ext in [".npy", ".png", ".json", ".txt"]:
            path = tmp_path / f"{kind}{ext}"
            if content is None:
                continue
            if content == "dir":
                os.mkdir(path)
            elif content == "truncated":
                full = {".npy": lambda p: np.save(p, X),
                        ".png": lambda p: Image.fromarray(image).save(p),
                        ".json": lambda p: p.write_text(json.dumps(
                            {"kernel": BOX.tolist(), "size": [3, 3]})),
                        ".txt": lambda p: np.savetxt(p, X)}[ext]
                scratch = tmp_path / f"scratch{ext}"
                full(scratch)
                data = scratch.read_bytes()
                path.write_bytes(data[:len(data) // 2 + 5])  # mid-line for text
                scratch.unlink()
            elif isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
    return dict(tmp=tmp_path, before=tmp_path / "before.png", after=tmp_path / "after.png",
                small=tmp_path / "small.png", before_xyz=tmp_path / "before.xyz",
                xnpy=tmp_path / "x.npy", ynpy=tmp_path / "y.npy", boxnpy=tmp_path / "box.npy",
                kernel=tmp_path / "kernel.npy", zeros=tmp_path / "zeros.npy",
                nan_kernel=tmp_path / "nan.npy", unreadable=tmp_path / "unreadable.png")


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def _run_cli(files, capsys, case):
    before = _snapshot(files["tmp"])
    argv = [a.format(**files) for a in case.argv]
    status = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert status == case.status, (status, err)
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("kernelfit: error: "), err
        message = case.message
        if isinstance(message, tuple):
            _, kind, ext = message
            message = HOSTILE_FILES[kind][1].format(path=re.escape(f"{kind}{ext}"))
        assert re.search(message, err), (message, err)
    after = _snapshot(files["tmp"])
    for path, signature in before.items():  # nothing lost or replaced
        assert after.get(path) == signature, f"{path} lost or replaced"
    new = set(after) - set(before)
    if status != 0:
        assert not new, f"files left behind: {new}"
    assert not [p for p in os.listdir(files["tmp"]) if p.startswith(".")]
    if case.check is not None:
        case.check(files)


@pytest.mark.parametrize("call, expect", ROWS)
def test_hostile_row(call, expect, tmp_path, request, capsys):
    if isinstance(expect, Cli):
        return _run_cli(request.getfixturevalue("files"), capsys, expect)
    run = (lambda: call(str(tmp_path))) if call.__code__.co_argcount == 1 else call
    if isinstance(expect, Fails):
        with pytest.raises(expect.error) as caught:
            run()
        message = str(caught.value)
        assert "\n" not in message, message
        assert re.search(expect.message, message), (expect.message, message)
        return
    if expect.warns is not None:
        with pytest.warns(expect.warns, match=expect.match):
            result = run()
    else:
        result = run()
    expect.check(result)


def test_the_table_is_large():
    assert len(ROWS) >= 300
