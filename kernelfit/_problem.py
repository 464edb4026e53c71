"""The linear inverse problem of fit_kernel: pairs in a canonical layout, and their dense systems.

Each solver takes a FitProblem; the dense ones ask it for least-squares systems ``A X = B``.
"""

import dataclasses
import functools

import numpy as np

from ._convolve import interior, padding

# A dense system larger than this (the patch matrix alone) is refused: the SVD needs as
# much again, and the statistics-based path is the right tool for such sizes.
DENSE_LIMIT_BYTES = 2 * 2**30


def index_map(n, before, after, pad_mode):
    """Source index of each extended sample along one axis (numpy.pad's rules); -1 is the fill.

    The extended axis runs from ``-before`` to ``n + after - 1`` in source coordinates.
    """
    t = np.arange(-before, n + after)
    if pad_mode == "constant":
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


def gather(source, maps, fillvalue, dtype):
    """The extended block ``source[maps]`` (spatial axes first, channels last), as `dtype`.

    Contiguous maps become slices, so a memmap is read only where the block lies.
    """
    block = source
    fill_axes = []
    for axis, m in enumerate(maps):
        index = [slice(None)] * block.ndim
        if m.size and m[0] >= 0 and np.array_equal(m, np.arange(m[0], m[0] + m.size)):
            index[axis] = slice(int(m[0]), int(m[0]) + m.size)
            block = block[tuple(index)]
        else:
            block = np.take(block, np.clip(m, 0, None), axis=axis)
            if (m < 0).any():
                fill_axes.append((axis, m < 0))
    block = np.array(block, dtype=dtype)
    for axis, outside in fill_axes:
        index = [slice(None)] * block.ndim
        index[axis] = outside
        block[tuple(index)] = fillvalue
    return block


@dataclasses.dataclass
class Tile:
    """Materialised output rows of a pair: the extended input they need, targets, usable."""

    extended: np.ndarray   # (*S_ext, C_in)
    target: np.ndarray     # (*S_out, C_out)
    usable: np.ndarray     # (*S_out, C_out) bool


@dataclasses.dataclass
class Pair:
    """One input/output pair, channels last (one channel when the data have none), kept lazy.

    The input is extended by the edge rule so that every output sample is the correlation of
    one 'valid' window with the kernel; `maps` say where each extended sample comes from, so
    the extension is made only for the rows asked for (`tile`), or all at once through
    `extended`, `target` and `usable`. Arrays may be memmaps: nothing is read until then.
    """

    source: np.ndarray     # (*S_in, C_in), any numeric dtype
    maps: tuple            # per spatial axis: extended coordinate -> source index, -1: fill
    fillvalue: object
    output: np.ndarray     # (*S_out, C_out), cropped to the samples the geometry explains
    mask: object           # None, or bool (*S_out, C_out or 1), cropped alike
    limits: object         # None, or (low, high): output samples at or past them are clipped
    kernel_rows: int       # kernel length along the first spatial axis
    dtype: object = None   # computation dtype, set once every pair is known

    @property
    def n_rows(self):
        return self.output.shape[0]

    def tile(self, start, stop):
        """Output rows [start, stop) and the extended input rows they depend on."""
        maps = (self.maps[0][start:stop + self.kernel_rows - 1],) + tuple(self.maps[1:])
        return Tile(gather(self.source, maps, self.fillvalue, self.dtype),
                    np.asarray(self.output[start:stop], dtype=self.dtype),
                    self.usable_rows(start, stop))

    def usable_rows(self, start, stop):
        """Which output samples of rows [start, stop) the fit may use."""
        rows = self.output[start:stop]
        usable = np.ones(rows.shape, dtype=bool)
        if self.mask is not None:
            usable &= self.mask[start:stop]
        if self.limits is not None:
            usable &= (rows > self.limits[0]) & (rows < self.limits[1])
        return usable

    @functools.cached_property
    def scan(self):
        """Usable samples per output channel, in blocks of rows (nothing held whole).

        Returns (counts per channel, whether every channel uses the same samples).
        """
        step = max(1, (1 << 20) // max(1, int(np.prod(self.output.shape[1:]))))
        counts = np.zeros(self.output.shape[-1], dtype=np.int64)
        joint = True
        for start in range(0, self.n_rows, step):
            usable = self.usable_rows(start, start + step)
            counts += usable.reshape(-1, usable.shape[-1]).sum(axis=0)
            joint = joint and bool((usable == usable[..., :1]).all())
        return counts, joint

    @functools.cached_property
    def _whole(self):
        return self.tile(0, self.n_rows)

    @property
    def extended(self):
        return self._whole.extended

    @property
    def target(self):
        return self._whole.target

    @property
    def usable(self):
        return self._whole.usable


@dataclasses.dataclass
class System:
    """A dense least-squares system ``A X = B`` and where its solution goes.

    `coef_index` (m, r) and `bias_index` (g, r) are flat indices into the kernel and bias
    arrays (in correlation orientation); `groups` (n,) labels each row's bias, or is None
    without a bias.
    """

    A: np.ndarray
    B: np.ndarray
    groups: object
    coef_index: np.ndarray
    bias_index: np.ndarray


@dataclasses.dataclass
class FitProblem:
    """Everything a solver needs, validated and in canonical form.

    Attributes
    ----------
    pairs : list of Pair
    size : tuple of int
        Spatial kernel shape.
    layout : {'shared', 'separate', 'full'}
        'shared': one spatial kernel for every channel (also the no-channel case);
        'separate': one kernel per channel; 'full': kernel (*size, C_in, C_out).
    n_in, n_out : int
        Input and output channels (1 without channels).
    bias : bool
    dtype : numpy dtype
        float or complex dtype of the computation.
    kernel_shape : tuple
        Shape of the kernel array in correlation orientation.
    bias_shape : tuple
        Shape of the bias array.
    n_masked : int
        Samples excluded by the mask or as saturated.
    """

    pairs: list
    size: tuple
    layout: str
    n_in: int
    n_out: int
    bias: bool
    dtype: np.dtype
    kernel_shape: tuple
    bias_shape: tuple
    n_masked: int

    @property
    def n_coefficients(self):
        return int(np.prod(self.kernel_shape))

    def windows(self, pair):
        """View of every 'valid' window: (*S_out, C_in, *size), nothing copied."""
        spatial = tuple(range(len(self.size)))
        return np.lib.stride_tricks.sliding_window_view(pair.extended, self.size, axis=spatial)

    def _row_counts(self):
        """Rows of each system, to check memory before anything is built."""
        counts = [p.scan[0] for p in self.pairs]
        if self.layout == "shared":
            return [int(sum(c.sum() for c in counts))]
        if self.layout == "separate" or not self._joint_rows():
            return [int(sum(c[j] for c in counts)) for j in range(self.n_out)]
        return [int(sum(c[0] for c in counts))]

    def _joint_rows(self):
        """True when every output channel uses the same rows (one design, several RHS)."""
        return all(p.scan[1] for p in self.pairs)

    def dense_bytes(self):
        """Bytes of the largest patch matrix the dense solvers would build."""
        m = int(np.prod(self.size)) * (self.n_in if self.layout == "full" else 1)
        return max(self._row_counts()) * m * self.dtype.itemsize

    def system_keys(self, joint=True):
        """The independent systems: None (one shared kernel), an output channel, or 'joint'.

        'joint' is one design for every output channel of a 'full' kernel, when they all
        use the same samples (several right-hand sides); `joint=False` asks for one system
        per output channel instead.
        """
        if self.layout == "shared":
            return [None]
        if self.layout == "full" and joint and self._joint_rows():
            return ["joint"]
        return list(range(self.n_out))

    def system_indices(self, key):
        """Where a system's solution goes: flat indices into the kernel and bias arrays.

        Returns ``coef_index`` (m, r) and ``bias_index`` (g, r), in correlation orientation,
        for the r right-hand sides of the system `key` (see `system_keys`).
        """
        k, n_out = int(np.prod(self.size)), self.n_out
        if key is None:
            return np.arange(k)[:, None], np.arange(self.n_in)[:, None]
        m = k * (self.n_in if self.layout == "full" else 1)
        if key == "joint":
            return np.arange(m)[:, None] * n_out + np.arange(n_out), np.arange(n_out)[None, :]
        return (np.arange(m) * n_out + key)[:, None], np.array([[key]])

    def systems(self):
        """Yield the dense systems, one at a time (each built only when needed)."""
        spatial = len(self.size)

        def channels_last(pair):  # (*S_out, *size, C_in): rows flatten like the kernel
            return np.moveaxis(self.windows(pair), spatial, -1)

        for key in self.system_keys():
            indices = self.system_indices(key)
            if key is None:
                channel = [np.broadcast_to(np.arange(self.n_in), p.usable.shape)[p.usable]
                           for p in self.pairs]
                yield System(self._stack(lambda p: (self.windows(p), p.usable)),
                             self._stack_target(lambda p: p.usable, slice(None)),
                             np.concatenate(channel) if self.bias else None, *indices)
            elif self.layout == "separate":
                yield System(
                    self._stack(lambda p: (np.take(self.windows(p), key, axis=spatial),
                                           p.usable[..., key])),
                    self._stack_target(lambda p: p.usable[..., key], key),
                    self._single_group(lambda p: p.usable[..., key]), *indices)
            else:
                column = 0 if key == "joint" else key
                target = slice(None) if key == "joint" else key
                rows = lambda p: p.usable[..., column]  # noqa: E731
                yield System(self._stack(lambda p: (channels_last(p), rows(p))),
                             self._stack_target(rows, target), self._single_group(rows),
                             *indices)

    def _stack(self, select):
        """Rows of the patch matrix over every pair: only the selected windows are copied."""
        parts = []
        for pair in self.pairs:
            windows, rows = select(pair)
            parts.append(windows[rows])
        stacked = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return stacked.reshape(stacked.shape[0], -1)

    def _stack_target(self, rows, channel):
        parts = []
        for pair in self.pairs:
            r = rows(pair)
            if r.ndim == pair.target.ndim:  # rows over (*S_out, C): one value per row
                parts.append(pair.target[r])
            else:
                parts.append(pair.target[r][:, channel])
        target = np.concatenate(parts)
        return target.reshape(target.shape[0], -1)

    def _single_group(self, rows):
        if not self.bias:
            return None
        return np.zeros(sum(int(rows(p).sum()) for p in self.pairs), dtype=int)


def infer_mode(in_shape, out_shape, size, name="output"):
    """The mode whose output geometry maps `in_shape` to `out_shape` for kernel `size`."""
    candidates = {
        "same": tuple(in_shape),
        "valid": tuple(n - k + 1 for n, k in zip(in_shape, size)),
        "full": tuple(n + k - 1 for n, k in zip(in_shape, size)),
    }
    for mode, shape in candidates.items():
        if tuple(out_shape) == shape:
            return mode
    expected = ", ".join(f"{shape} for {mode!r}" for mode, shape in candidates.items())
    raise ValueError(f"{name} spatial shape {tuple(out_shape)} does not match input spatial "
                     f"shape {tuple(in_shape)} with size {tuple(size)} in any mode: expected "
                     f"{expected}")


def expected_shape(in_shape, size, mode):
    return {"same": tuple(in_shape),
            "valid": tuple(n - k + 1 for n, k in zip(in_shape, size)),
            "full": tuple(n + k - 1 for n, k in zip(in_shape, size))}[mode]


def extend(shape, size, mode, boundary, pad_mode, convention, origin):
    """Index maps that extend an input of spatial `shape` so that 'valid' windows give `mode`.

    Returns the maps (one per spatial axis) and the slices of the output whose samples they
    explain: with ``boundary=None`` in 'same' mode only the interior, which does not depend
    on the edge rule.
    """
    if mode == "same" and boundary is None:
        return tuple(np.arange(n) for n in shape), interior(shape, size, convention, origin)
    pads = padding(size, mode, convention, origin)
    if mode == "valid":
        return tuple(np.arange(n) for n in shape), (slice(None),) * len(shape)
    maps = tuple(index_map(n, before, after, pad_mode)
                 for n, (before, after) in zip(shape, pads))
    return maps, (slice(None),) * len(shape)
