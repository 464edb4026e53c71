"""The index arithmetic of the forward model: supports, output geometry, edge rules, regions.

Every geometry is a 'valid' correlation of an extended input: output ``y[n] = sum_j k[j]
x_ext[n + lo + j]``. A `Support` says where the kernel's taps lie relative to the output sample,
a `Box` which output samples are used, and an index map how the input is extended.
"""

import dataclasses
import itertools

import numpy as np

from ._validation import check_int_tuple

@dataclasses.dataclass(frozen=True)
class Support:
    """Where a kernel's taps lie, per spatial axis, in correlation orientation.

    Tap ``j`` (``0 <= j < shape``) multiplies the input sample ``lo + j`` samples away from
    the output sample, so the taps cover the lags ``lo .. lo + shape - 1``.
    """

    lo: tuple
    shape: tuple

    @property
    def hi(self):
        return tuple(a + k - 1 for a, k in zip(self.lo, self.shape))

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def ndim(self):
        return len(self.shape)

    def contains(self, other):
        return all(a <= b and c >= d for a, b, c, d in zip(self.lo, other.lo, self.hi,
                                                            other.hi))

    def positions_in(self, other):
        """Flat indices, in `other`'s C order, of this support's taps (self inside other)."""
        index = np.ix_(*(np.arange(a - b, a - b + k)
                         for a, b, k in zip(self.lo, other.lo, self.shape)))
        return np.ravel_multi_index(index, other.shape).ravel()

    def grow(self, before, after):
        """The support widened by `before` / `after` lags per axis."""
        return Support(tuple(a - b for a, b in zip(self.lo, before)),
                       tuple(k + b + c for k, b, c in zip(self.shape, before, after)))

    def origin(self, convention):
        """The user-facing `origin` of this support in 'same' mode."""
        if convention == "correlation":
            return tuple(-a - k // 2 for a, k in zip(self.lo, self.shape))
        return tuple(k // 2 + a for a, k in zip(self.lo, self.shape))


def support_for(size, mode, convention, origin):
    """The support of a kernel of `size` in `mode`, oriented by `convention`, moved by `origin`.

    The support is in correlation orientation: a convolution kernel is flipped before use.
    """
    pads = padding(size, mode, convention, origin)
    return Support(tuple(-before for before, _ in pads), tuple(size))


def padding(kernel_shape, mode, convention, origin):
    """Input extension per spatial axis, ``[(before, after), ...]``, that makes 'valid' give `mode`.

    Every geometry is computed as a 'valid' filtering of the extended input: 'full' extends
    by ``K - 1`` on both sides; 'same' by ``K // 2`` before and ``(K - 1) // 2`` after in
    correlation orientation (scipy.signal's centring), moved by `origin`.
    """
    if mode == "valid":
        return [(0, 0)] * len(kernel_shape)
    if mode == "full":
        return [(k - 1, k - 1) for k in kernel_shape]
    sign = 1 if convention == "correlation" else -1
    return [(k // 2 + sign * o, (k - 1) // 2 - sign * o) for k, o in zip(kernel_shape, origin)]


def anchor(kernel_shape, convention, origin=None):
    """The kernel index over the output sample in 'same' mode, per axis.

    scipy.signal's centring: ``K // 2`` in correlation orientation, ``(K - 1) // 2`` in
    convolution orientation, moved by `origin` (as `padding` extends the input).
    """
    origin = origin or (0,) * len(kernel_shape)
    return tuple((k // 2 if convention == "correlation" else (k - 1) // 2) + o
                 for k, o in zip(kernel_shape, origin))


def check_origin(origin, kernel_shape, mode, convention):
    """Validate `origin` against the kernel shape and mode; return a tuple of ints."""
    origin = check_int_tuple(origin, "origin", len(kernel_shape))
    if mode != "same":
        if any(origin):
            raise ValueError(f"origin must be 0 for mode={mode!r}; only 'same' has an anchor "
                             f"to shift; got origin={origin}")
        return origin
    for o, k in zip(origin, kernel_shape):
        # Correlation anchors at k // 2; convolution mirrors both the anchor and the shift.
        low, high = (-(k // 2), (k - 1) // 2) if convention == "correlation" else (
            -((k - 1) // 2), k // 2)
        if not low <= o <= high:
            raise ValueError(f"origin={origin} is out of range for a kernel of shape "
                             f"{tuple(kernel_shape)} with convention={convention!r}: each "
                             f"entry must lie between {low} and {high} for length {k}")
    return origin


def interior(shape, size, convention, origin):
    """Slices of a 'same'-mode output of spatial `shape` whose samples do not depend on the
    edge rule: those whose window lies inside the input."""
    pads = padding(size, "same", convention, origin)
    return tuple(slice(before, n - after) for (before, after), n in zip(pads, shape))


def output_shape(in_shape, size, mode):
    """Spatial shape of a `mode` output for an input of spatial `in_shape` and kernel `size`."""
    return {"same": tuple(in_shape),
            "valid": tuple(n - k + 1 for n, k in zip(in_shape, size)),
            "full": tuple(n + k - 1 for n, k in zip(in_shape, size))}[mode]


def infer_mode(in_shape, out_shape, size, name="output"):
    """The mode whose output geometry maps `in_shape` to `out_shape` for kernel `size`."""
    for mode in ("same", "valid", "full"):
        if tuple(out_shape) == output_shape(in_shape, size, mode):
            return mode
    expected = ", ".join(f"{output_shape(in_shape, size, mode)} for {mode!r}"
                         for mode in ("same", "valid", "full"))
    raise ValueError(f"{name} spatial shape {tuple(out_shape)} does not match input spatial "
                     f"shape {tuple(in_shape)} with size {tuple(size)} in any mode: expected "
                     f"{expected}")


# --- boxes of output samples ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Box:
    """A box of output samples: ``start[i] <= n[i] < stop[i]`` along every spatial axis."""

    start: tuple
    stop: tuple

    @property
    def shape(self):
        return tuple(max(0, b - a) for a, b in zip(self.start, self.stop))

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def empty(self):
        return self.size == 0

    def slices(self):
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def contains(self, other):
        return other.empty or all(a <= c and d <= b for a, b, c, d in zip(
            self.start, self.stop, other.start, other.stop))

    def intersect(self, other):
        return Box(tuple(max(a, c) for a, c in zip(self.start, other.start)),
                   tuple(min(b, d) for b, d in zip(self.stop, other.stop)))

    def rows(self, start, stop):
        """The part of this box with its first coordinate in [start, stop)."""
        return Box((max(self.start[0], start),) + self.start[1:],
                   (min(self.stop[0], stop),) + self.stop[1:])

    def minus(self, inner):
        """Disjoint boxes that cover this box less `inner` (which must lie inside it)."""
        pieces, lower, upper = [], list(self.start), list(self.stop)
        for axis in range(len(lower)):
            for a, b in ((lower[axis], inner.start[axis]), (inner.stop[axis], upper[axis])):
                if b > a:
                    start, stop = list(lower), list(upper)
                    start[axis], stop[axis] = a, b
                    pieces.append(Box(tuple(start), tuple(stop)))
            lower[axis], upper[axis] = inner.start[axis], inner.stop[axis]
        return pieces


def region(in_shape, support, mode, rule):
    """The output samples a geometry explains: all of them, or with ``rule=None`` in 'same'
    mode only those whose window lies inside the input (they do not depend on the edge rule).
    """
    out = output_shape(in_shape, support.shape, mode)
    if mode == "same" and rule is None:
        return Box(tuple(-a for a in support.lo),
                   tuple(n - h for n, h in zip(in_shape, support.hi)))
    return Box((0,) * len(out), out)


def index_map(n, t, pad_mode):
    """Source index of the extended coordinates `t` along an axis of length `n`.

    numpy.pad's rules; -1 marks the fill value ('constant').
    """
    t = np.asarray(t)
    if pad_mode is None or pad_mode == "constant":
        return np.where((t >= 0) & (t < n), t, -1)
    if pad_mode == "edge":
        return np.clip(t, 0, n - 1)
    if pad_mode == "wrap":
        return t % n
    if pad_mode == "symmetric":
        t = t % (2 * n)
        return np.where(t < n, t, 2 * n - 1 - t)
    if n == 1:  # 'reflect' of a single sample
        return np.zeros_like(t)
    t = t % (2 * n - 2)
    return np.where(t < n, t, 2 * n - 2 - t)


def block_maps(in_shape, support, box, pad_mode):
    """Per axis, the source index of every input sample the windows of `box` read (-1: fill)."""
    return tuple(index_map(n, np.arange(a + lo, b + lo + k - 1), pad_mode)
                 for n, a, b, lo, k in zip(in_shape, box.start, box.stop, support.lo,
                                           support.shape))


def candidate_supports(outer, shape):
    """Every placement of a support of `shape` inside `outer` that holds lag 0 (the anchor)."""
    ranges = [range(max(a, -(k - 1)), min(0, h - k + 1) + 1)
              for a, h, k in zip(outer.lo, outer.hi, shape)]
    return [Support(tuple(lo), tuple(shape)) for lo in itertools.product(*ranges)]
