"""Argument checks shared by the public functions: each names the argument it checks.

Every public function validates its arguments here, once, and the private modules trust them.
"""

import numbers

import numpy as np

MODES = ("full", "same", "valid")
CONVENTIONS = ("convolution", "correlation")

# Public boundary name -> numpy.pad mode.  scipy.signal.convolve2d's names are aliases.
BOUNDARIES = {
    "constant": "constant",
    "fill": "constant",
    "edge": "edge",
    "wrap": "wrap",
    "symmetric": "symmetric",
    "symm": "symmetric",
    "reflect": "reflect",
}


def shown(value, limit=80):
    """repr(value) on one line, cut to about `limit` characters (an array's repr is long)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _quote_all(values):
    return ", ".join(repr(v) for v in values)


def check_choice(value, name, choices):
    """Return `value` if it is one of `choices`, else raise naming `name` and the choices."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {_quote_all(choices)}; got {shown(value)}")
    return value


def check_boundary(boundary):
    """Return the numpy.pad name for a public boundary name."""
    return BOUNDARIES[check_choice(boundary, "boundary", tuple(BOUNDARIES))]


def float_dtype(dtype):
    """The floating dtype that data of `dtype` is computed in.

    Integers and booleans go to float64, float16 to float32; float32/64 and complex64/128
    are kept.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind in "fc":
        return dtype
    raise TypeError(f"unsupported dtype {dtype}")


def as_float_array(value, name, *, min_ndim=1):
    """Convert an array-like to a finite floating or complex ndarray, checking it on the way.

    Raises TypeError for non-numeric data and ValueError for too few dimensions, empty axes
    and NaN or infinite values; every message names `name`.
    """
    array = as_numeric_array(value, name, min_ndim=min_ndim)
    return array.astype(float_dtype(array.dtype), copy=False)


def check_scalar(value, name, *, complex_ok=True):
    """Return a finite Python number (int, float or complex), naming `name` if it is not one."""
    kinds = numbers.Complex if complex_ok else numbers.Real
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "a real or complex number" if complex_ok else "a real number"
        raise TypeError(f"{name} must be {what}; got {shown(value)}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {shown(value)}")
    return value


def check_axis(axis, ndim, name):
    """Normalise an integer axis against `ndim`, or raise naming `name` and the valid range."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be None or an integer; got {shown(axis)}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} "
                         f"dimension{'s' if ndim != 1 else ''} (valid: {-ndim} to {ndim - 1})")
    return axis % ndim


def check_int_tuple(value, name, length, *, minimum=None):
    """An int or a sequence of `length` ints as a tuple; each at least `minimum` if given."""
    if isinstance(value, np.ndarray):  # as nested lists: 0-d is a number, and reprs one line
        value = value.tolist()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (int(value),) * length
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer or a sequence of {length} integers; "
                            f"got {shown(value)}") from None
        if len(values) != length or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{name} must be an integer or a sequence of {length} integers; "
                             f"got {shown(value)}")
        values = tuple(int(v) for v in values)
    if minimum is not None and any(v < minimum for v in values):
        raise ValueError(f"{name} must be at least {minimum} along every axis; got "
                         f"{shown(value)}")
    return values


def as_numeric_array(value, name, *, min_ndim=1, chunk=1 << 22):
    """Like as_float_array, but the array (a memmap, say) is checked without being converted.

    NaN and infinities are looked for `chunk` elements at a time, so a large memmap is read
    once and never copied whole; the caller converts the parts it uses.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array-like; {exc}") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array (bool, integer, float or complex); "
                        f"got dtype {array.dtype}")
    if array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension"
                         f"{'s' if min_ndim > 1 else ''}; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {array.shape}")
    if array.dtype.kind in "fc":
        rows = max(1, chunk // max(1, array[0].size))
        for start in range(0, array.shape[0], rows):
            if not np.all(np.isfinite(array[start:start + rows])):
                raise ValueError(f"{name} contains NaN or infinite values")
    return array


def saturation_limits(saturated, y_raw):
    """(low, high) beyond which output samples count as clipped, or None."""
    if isinstance(saturated, str):
        check_choice(saturated, "saturated", ("auto",))
        if y_raw.dtype.kind in "iu":
            info = np.iinfo(y_raw.dtype)
            return info.min, info.max
        return None
    if isinstance(saturated, (bool, np.bool_)):
        return (y_raw.min(), y_raw.max()) if saturated else None
    try:
        low, high = saturated
    except (TypeError, ValueError):
        raise ValueError(f"saturated must be 'auto', True, False or a (low, high) pair; got "
                         f"{shown(saturated)}") from None
    low = check_scalar(low, "saturated low", complex_ok=False)
    high = check_scalar(high, "saturated high", complex_ok=False)
    if not low < high:
        raise ValueError(f"saturated limits must satisfy low < high; got {shown(saturated)}")
    if np.iscomplexobj(y_raw):
        raise ValueError("saturated limits need a real output; got complex data")
    return low, high
