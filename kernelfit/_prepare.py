"""Prepare: every argument of fit_kernel checked once, and the data as lazily read pairs.

Nothing downstream validates again. The pixels are not read here: each block is read, converted
to the fit's dtype and checked for NaN once, when a later stage asks for it (`Pair.block`).
"""

import dataclasses
import numbers

import numpy as np

from ._constrain import check_constraints, check_for_data
from ._dask import is_dask
from ._geometry import (
    block_maps,
    check_origin,
    infer_mode,
    output_shape,
    support_for,
)
from ._operator import LAYOUTS, gather
from ._prior import check_prior
from ._reweight import check_errors, check_loss, check_noise
from ._progress import Progress, check_progress
from ._solve import check_options
from ._validation import (
    BOUNDARIES,
    CONVENTIONS,
    MODES,
    check_axis,
    check_boundary,
    check_choice,
    check_int_tuple,
    check_scalar,
    saturation_limits,
    shown,
)

__all__ = ["Problem", "Pair", "prepare"]


class Source:
    """One array of a pair, channels last, read by blocks (an ndarray, a memmap, or any array
    with ``shape``, ``dtype`` and slicing, such as zarr or h5py datasets)."""

    def __init__(self, array, channel_axis=None):
        self.array = array
        self.dtype = np.dtype(array.dtype)
        ndim = len(array.shape)
        if channel_axis is None:
            self.axes = tuple(range(ndim))
            self.shape = tuple(array.shape) + (1,)
        else:
            self.axes = tuple(a for a in range(ndim) if a != channel_axis) + (channel_axis,)
            self.shape = tuple(array.shape[a] for a in self.axes)
        self.added = channel_axis is None

    def read(self, index):
        """The block `index` (slices over the channels-last axes) as an ndarray."""
        block = np.asarray(self.array[self.original(index)])
        if self.axes != tuple(range(len(self.axes))):
            block = np.transpose(block, self.axes)
        return block[..., np.newaxis] if self.added else block

    def original(self, index):
        """The index `index` (over the channels-last axes) over the array's own axes."""
        original = [slice(None)] * len(self.axes)
        for position, axis in enumerate(self.axes):
            original[axis] = index[position]
        return tuple(original)


@dataclasses.dataclass(frozen=True)
class Block:
    """Materialised output samples of a pair: the extended input their windows read, their
    targets and which of them the fit may use. A leading batch axis of 1."""

    extended: np.ndarray   # (1, *S_block, C_in)
    target: np.ndarray     # (1, *S_valid, C_out)
    usable: np.ndarray     # (1, *S_valid, C_out) bool
    weight: object = None  # None, or (1, *S_valid, C_out) float: each sample's weight


@dataclasses.dataclass(frozen=True)
class Pair:
    """One input/output pair of a fit, channels last, never read whole."""

    input: Source
    output: Source
    mask: object           # None or a Source of bool, last axis C_out or 1
    limits: object         # None or (low, high): output samples at or past them are clipped
    name: str              # '' for a single pair, '[i]' for the i-th of several
    weights: object = None  # None or a Source of weights >= 0, last axis C_out or 1

    @property
    def in_shape(self):
        return self.input.shape[:-1]

    @property
    def grid(self):
        """Where the output's storage chunks (a dask or zarr array's) begin along each
        spatial axis, after the first sample: tiles cut there read few chunks. None for an
        array in memory."""
        chunks = getattr(self.output.array, "chunks", None)
        if not isinstance(chunks, tuple) or len(chunks) != len(self.output.axes):
            return None
        bounds = []
        output = self.output
        for axis in output.axes if output.added else output.axes[:-1]:
            sizes, n = chunks[axis], output.array.shape[axis]
            if isinstance(sizes, tuple):  # dask: the size of every chunk
                bounds.append(tuple(int(b) for b in np.cumsum(sizes)[:-1]))
            else:  # zarr: one size for all
                bounds.append(tuple(range(int(sizes), int(n), int(sizes))))
        return tuple(bounds)

    @property
    def out_shape(self):
        return self.output.shape[:-1]

    def block(self, support, box, pad_mode, fillvalue, dtype, out=None):
        """Output samples `box` and the extended input their windows (taps `support`) read.

        The input is extended by `pad_mode` (None: the windows must lie inside the input).
        Values are checked here, as they are read: NaN or infinity in the input, or in an
        output sample the fit may use, is an error naming the argument. With `out` (a
        Block's arrays without the batch axis: a slot of a batch), they are written there.
        """
        maps = block_maps(self.in_shape, support, box, pad_mode)
        extended = gather(self.input, maps, fillvalue, dtype, read=self.input.read,
                          out=None if out is None else out.extended)
        # (a finite sum of squares is cheap proof that every value is finite, and that the
        # sums of products the fit makes neither overflow nor underflow)
        _check_scale(extended, f"input{self.name}")
        index = box.slices() + (slice(None),)
        raw = self.output.read(index)
        if out is None:
            usable, target = np.ones(raw.shape, dtype=bool), raw.astype(dtype)
        else:
            usable, target = out.usable, out.target
            usable[...], target[...] = True, raw
        if self.mask is not None:
            usable &= np.broadcast_to(self.mask.read(index), raw.shape)
        if self.limits is not None:
            usable &= (raw > self.limits[0]) & (raw < self.limits[1])
        weight = None
        if self.weights is not None:
            weight = out.weight if out is not None else np.empty(raw.shape)
            # an array of weights, or a rule that computes them from the block (a noise
            # model's variance at a prediction)
            if hasattr(self.weights, "of"):  # (on the samples the fit may use only)
                weight[...] = np.where(usable, self.weights.of(extended, support, target), 0)
            else:
                weight[...] = np.broadcast_to(self.weights.read(index), raw.shape)
            if not (np.isfinite(weight).all() and weight.min() >= 0):
                bad = ~(np.isfinite(weight) & (weight >= 0))
                raise ValueError(f"weights{self.name} must be finite and >= 0 (0 leaves a "
                                 f"sample out, like mask=); got {float(weight[bad].flat[0])!r}")
            usable &= weight > 0
            weight[~usable] = 0
        if not np.isfinite(target.sum()):
            finite = np.isfinite(target)
            if not finite[usable].all():
                raise ValueError(f"output{self.name} contains NaN or infinite values (in "
                                 f"samples the fit uses; mask them out with mask=)")
            target[~finite] = 0
        _check_scale(target, f"output{self.name}")
        if out is not None:
            return out
        return Block(extended[np.newaxis], target[np.newaxis], usable[np.newaxis],
                     None if weight is None else weight[np.newaxis])


# The sums of squares of a block's samples must stay well inside float64: the Gram matrix,
# the correlations and the FFTs of the fit are sums of such products.
LARGEST_ENERGY, SMALLEST_ENERGY = 1e280, 1e-280


def _check_scale(values, name):
    """NaN or infinity, or values whose products overflow or underflow float64: an error
    naming the argument and saying what to do."""
    flat = values.reshape(-1)
    energy = float(np.real(np.vdot(flat, flat)))
    if np.isfinite(energy) and (SMALLEST_ENERGY <= energy <= LARGEST_ENERGY or (
            energy == 0 and not flat.any())):
        return
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    largest = float(np.max(np.abs(flat)))
    if not np.isfinite(energy) or energy > LARGEST_ENERGY:
        raise ValueError(f"{name} has values up to {largest:.1e}: the sums of their products "
                         f"overflow float64. Divide input and output by powers of ten (the "
                         f"kernel scales by the output's factor over the input's)")
    raise ValueError(f"{name} has values of at most {largest:.1e}: the sums of their products "
                     f"underflow float64. Multiply input and output by powers of ten (the "
                     f"kernel scales by the output's factor over the input's)")


@dataclasses.dataclass(frozen=True)
class Problem:
    """A fit_kernel call, validated: the pairs and every option in canonical form.

    `size` and `origin` may still be 'auto' (the search settles them); `origin` is in the
    user's `convention`. `joint` says whether every output channel of a 'full' layout uses
    the same samples (one design, several right-hand sides).
    """

    pairs: tuple
    n_spatial: int
    n_in: int
    n_out: int
    layout: str
    grey_output: bool
    channel_axis: object
    channels: object
    mode: str
    boundary: object       # None, 'auto' or a public rule name
    fillvalue: object
    convention: str
    bias: bool
    dtype: np.dtype
    size: object           # tuple or 'auto'
    origin: object         # tuple or 'auto'
    max_size: int
    checks: bool
    method: str
    options: dict
    joint: bool
    n_masked_outside: int = 0
    progress: object = None   # a Progress: reports the passes over the pixels
    dask: bool = False        # some array is a dask array: the passes run on Dask
    constraints: object = None  # a Constraints, or None: the free fit
    noise: object = None      # a Noise, or None: no noise model
    loss: str = "squared"     # 'squared', or a robust loss ('huber', 'cauchy')
    outlier_threshold: object = None  # residuals beyond it are counted (robust fits)
    prior: object = None      # None, or {'laplacian': weight or 'gcv'}
    errors: str = "model"     # 'model', or 'sandwich' (heteroscedasticity-consistent)

    @property
    def weighted(self):
        """Whether the samples carry weights (``fit_kernel(weights=...)``, or a noise
        model's)."""
        return any(pair.weights is not None for pair in self.pairs)

    @property
    def robust(self):
        """Whether the loss is a robust one (reweighted by the residuals)."""
        return self.loss != "squared"

    @property
    def needs_moments(self):
        """Whether the residual pass gathers its moments: for the checks, a robust loss's
        scale, or the variance against the level that noise='auto' fits."""
        return self.checks or self.robust or (self.noise is not None
                                              and self.noise.model == "auto")

    @property
    def absolute(self):
        """Whether the weights are a noise model's inverse variances: the residual's scale
        is then known (variance factor 1), not estimated."""
        return self.noise is not None and self.weighted

    @property
    def pad_mode(self):
        return None if self.boundary in (None, "auto") else BOUNDARIES[self.boundary]

    def support(self, size, origin):
        """The support of a kernel of `size` at the user `origin`, correlation orientation."""
        return support_for(size, self.mode, self.convention, origin)

    def kernel_shape(self, size):
        return {"shared": tuple(size), "separate": tuple(size) + (self.n_out,),
                "full": tuple(size) + (self.n_in, self.n_out)}[self.layout]

    @property
    def input_precision(self):
        """Relative rounding of the input's dtype (0 for integers: exact as given)."""
        return max(_precision(p.input.dtype) for p in self.pairs)

    @property
    def output_precision(self):
        return max(_precision(p.output.dtype) for p in self.pairs)

    @property
    def output_rounding(self):
        """The RMS error of rounding to the output's integer steps, 1/sqrt(12) (0 when the
        output is floating-point): what a linear filter written as integers leaves."""
        return 0.0 if any(p.output.dtype.kind in "fc" for p in self.pairs) else \
            float(1 / np.sqrt(12))


def _precision(dtype):
    return float(np.finfo(dtype).eps) if dtype.kind in "fc" else 0.0


# --- prepare ----------------------------------------------------------------------------------

CHANNELS = LAYOUTS


def prepare(input, output, size, *, mode, boundary, fillvalue, convention, origin, bias,
            channel_axis, channels, mask, saturated, method, options, max_size, checks,
            progress=None, constraints=None, weights=None, noise=None, gain=None,
            read_noise=None, loss="squared", prior=None, errors="model"):
    """Check every argument of fit_kernel once; return the Problem."""
    options = check_options(method, options)
    constraints = check_constraints(constraints, method)
    noise = check_noise(noise, gain, read_noise)
    loss = check_loss(loss, weights)
    prior = check_prior(prior, method, constraints)
    errors = check_errors(errors, weights, noise, loss, method, constraints, prior)
    if noise is not None and weights is not None:
        raise ValueError("weights and noise both weight the samples (a noise model's weights "
                         "are its inverse variances): pass one of them")
    progress = Progress(check_progress(progress))
    check_choice(convention, "convention", CONVENTIONS)
    if mode is not None:
        check_choice(mode, "mode", MODES)
    if boundary is not None and not (isinstance(boundary, str) and boundary == "auto"):
        check_boundary(boundary)
    fillvalue = check_scalar(fillvalue, "fillvalue")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False; got {shown(bias)}")
    if not isinstance(checks, (bool, np.bool_)):
        raise TypeError(f"checks must be True or False; got {shown(checks)}")
    check_choice(channels, "channels", CHANNELS)
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) \
            or max_size < 1:
        raise ValueError(f"max_size must be a positive integer; got {shown(max_size)}")
    if isinstance(size, str) and size != "auto":
        raise ValueError(f"size must be an integer, a sequence of integers, or 'auto'; got "
                         f"{size!r}")
    if isinstance(origin, str) and origin != "auto":
        raise ValueError(f"origin must be an integer, a sequence of integers, or 'auto'; got "
                         f"{origin!r}")
    # arrays as sequences ('auto' is compared below; an array would compare elementwise)
    size, origin = (v.tolist() if isinstance(v, np.ndarray) else v
                    for v in (size, origin))

    if channel_axis is None and channels != "shared":
        raise ValueError(f"channels={channels!r} needs channel_axis (the axis of the input's "
                         f"channels); got channel_axis=None")
    inputs, outputs = _as_pairs(input, output)
    masks = _as_masks(mask, len(inputs))
    weights = _as_masks(weights, len(inputs), "weights")
    if any(w is None for w in weights) and not all(w is None for w in weights):
        missing = next(i for i, w in enumerate(weights) if w is None)
        raise ValueError(f"weights[{missing}] is None: give every pair its weights (an array "
                         f"of ones for equal ones) or none")
    n = len(inputs)
    inputs = [_unmasked_input(x, _name("input", i, n)) for i, x in enumerate(inputs)]
    for i, y in enumerate(outputs):
        outputs[i], masks[i] = _unmasked_output(y, masks[i], channel_axis)
    first = _as_array(inputs[0], _name("input", 0, n))
    if channel_axis is not None:
        if first.ndim < 2:
            raise ValueError(f"input must have at least 2 dimensions with a channel_axis; "
                             f"got shape {first.shape}")
        channel_axis = check_axis(channel_axis, first.ndim, "channel_axis")
    n_spatial = first.ndim - (channel_axis is not None)
    if size != "auto":
        size = check_int_tuple(size, "size", n_spatial, minimum=1)
    if size == "auto" and origin != "auto" and any(
            check_int_tuple(origin, "origin", n_spatial)):
        raise ValueError("size='auto' finds the kernel's placement too: pass origin=0 (the "
                         "default) or origin='auto', or give the size")

    pairs, grey = [], None
    for i, (x, y, m, w) in enumerate(zip(inputs, outputs, masks, weights)):
        x = first if i == 0 else _as_array(x, _name("input", i, n))
        if len(x.shape) != len(first.shape):
            raise ValueError(f"{_name('input', i, n)} has {len(x.shape)} dimensions and "
                             f"{_name('input', 0, n)} {len(first.shape)}: every pair must "
                             f"have the same dimensions (and channel layout)")
        y = _as_array(y, _name("output", i, n))
        x_source, y_source, grey_here = _channels_last(x, y, channel_axis, n_spatial, i, n)
        if grey is not None and grey_here != grey:
            raise ValueError("every output must have the same channel layout")
        grey = grey_here
        mask_source = _mask(m, y_source, channel_axis, grey_here, i, n)
        pairs.append(Pair(x_source, y_source, mask_source,
                          saturation_limits(saturated, _Whole(y_source)),
                          "" if n == 1 else f"[{i}]",
                          _weights(w, y_source, channel_axis, grey_here, i, n)))
    n_in, n_out = pairs[0].input.shape[-1], pairs[0].output.shape[-1]
    for pair in pairs[1:]:
        if pair.input.shape[-1] != n_in or pair.output.shape[-1] != n_out:
            raise ValueError("every pair must have the same number of channels")
    layout = _layout(channel_axis, channels, grey, n_in, n_out)

    mode, size = _geometry(pairs, size, mode, n)
    if origin == "auto" and mode != "same":
        origin = (0,) * n_spatial
    if size != "auto" and origin != "auto":
        origin = check_origin(origin, size, mode, convention)
    if boundary == "auto" and mode == "valid":
        boundary = None  # no sample depends on the edge rule
    elif boundary is None and mode == "full":
        boundary = "fill"  # every sample depends on it: zeros, as scipy.signal does
    dtype = np.dtype(np.complex128 if any(
        p.input.dtype.kind == "c" or p.output.dtype.kind == "c" for p in pairs)
        or isinstance(fillvalue, complex) else np.float64)
    joint = n_out == 1 or (all(p.mask is None or p.mask.shape[-1] == 1 for p in pairs)
                           and all(p.weights is None or p.weights.shape[-1] == 1
                                   for p in pairs)
                           and all(p.limits is None for p in pairs))
    check_for_data(constraints, n_spatial=n_spatial, size=size, layout=layout, n_in=n_in,
                   dtype=dtype)
    if errors == "sandwich" and layout == "full" and joint and n_out > 1:
        raise ValueError("errors='sandwich' takes one output channel per system: a "
                         "channels='full' kernel whose output channels share their samples "
                         "is one system of several (fit the output channels one at a time)")
    return Problem(
        pairs=tuple(pairs), n_spatial=n_spatial, n_in=n_in, n_out=n_out, layout=layout,
        grey_output=bool(grey), channel_axis=channel_axis,
        channels=None if channel_axis is None else ("full" if grey else channels),
        mode=mode, boundary=boundary, fillvalue=fillvalue, convention=convention,
        bias=bool(bias), dtype=dtype, size=size, origin=origin, max_size=int(max_size),
        checks=bool(checks), method=method, options=options, joint=joint,
        progress=progress, dask=any(is_dask(source.array) for pair in pairs
                                    for source in (pair.input, pair.output, pair.mask,
                                                   pair.weights)
                                    if source is not None),
        constraints=constraints, noise=noise, loss=loss, prior=prior, errors=errors)


def _geometry(pairs, size, mode, n):
    """The mode (inferred from the shapes when None) and, for 'valid' and 'full', the size."""
    modes = set()
    for i, pair in enumerate(pairs):
        y_name = _name("output", i, n)
        spatial_in, spatial_out = pair.in_shape, pair.out_shape
        if size == "auto":
            pair_mode = mode or ("same" if spatial_in == spatial_out else
                                 "valid" if all(o < s for s, o in zip(spatial_in, spatial_out))
                                 else "full")
            implied = tuple(abs(s - o) + 1 for s, o in zip(spatial_in, spatial_out))
            if pair_mode != "same" and spatial_in == spatial_out:
                # 'valid' and 'full' read the size from the difference of the shapes: none
                # means a 1x1 kernel, never what a filter with equal shapes did
                than = "smaller" if pair_mode == "valid" else "larger"
                raise ValueError(f"mode={pair_mode!r} with size='auto' takes the kernel's "
                                 f"size from how much {than} the output is than the input, "
                                 f"but {y_name} spatial shape {spatial_out} equals the "
                                 f"{_name('input', i, n)}'s: that is 'same' geometry. Pass "
                                 f"mode='same' (or no mode) to search the size, or give the "
                                 f"size (1 for a 1x1 kernel)")
            if pair_mode != "same":
                size_here = implied
                if output_shape(spatial_in, implied, pair_mode) != spatial_out:
                    raise ValueError(f"{y_name} spatial shape {spatial_out} does not fit "
                                     f"mode={pair_mode!r} for input spatial shape "
                                     f"{spatial_in}")
            else:
                size_here = None
                if spatial_out != spatial_in:
                    raise ValueError(f"{y_name} spatial shape {spatial_out} does not fit "
                                     f"mode='same': expected {spatial_in}")
        else:
            size_here = size
            if any(k > s for k, s in zip(size, spatial_in)):
                raise ValueError(f"size {size} is larger than the "
                                 f"{_name('input', i, n)} spatial shape {spatial_in}")
            pair_mode = mode or infer_mode(spatial_in, spatial_out, size, y_name)
            expected = output_shape(spatial_in, size, pair_mode)
            if mode is not None and spatial_out != expected:
                raise ValueError(f"{y_name} spatial shape {spatial_out} does not fit mode="
                                 f"{mode!r}: expected {expected} for input spatial shape "
                                 f"{spatial_in} and size {size}")
        modes.add((pair_mode, size_here))
        if len({m for m, _ in modes}) > 1:
            raise ValueError(f"the pairs' shapes imply different modes "
                             f"{sorted({m for m, _ in modes})}; pass mode= or give every pair "
                             f"the same geometry")
        if len(modes) > 1:
            raise ValueError(f"the pairs' shapes imply different kernel sizes "
                             f"{sorted(s for _, s in modes)}; give every pair the same "
                             f"geometry")
    ((mode, implied),) = modes
    return mode, (size if implied is None else implied)


class _Whole:
    """The output of a pair as saturation_limits sees it: its dtype, and min/max on demand."""

    def __init__(self, source):
        self.source = source
        self.dtype = source.dtype

    def min(self):
        return self._reduce(np.min)

    def max(self):
        return self._reduce(np.max)

    def _reduce(self, function):
        # saturated=True is the one option that reads the output before the fit does
        if is_dask(self.source.array):  # a reduction on the workers
            return function(self.source.array).compute()
        shape = self.source.shape
        rows = max(1, (1 << 22) // max(1, int(np.prod(shape[1:]))))
        values = [function(self.source.read((slice(start, start + rows),)
                                            + (slice(None),) * (len(shape) - 1)))
                  for start in range(0, shape[0], rows)]
        return function(values)


def _name(what, i, n):
    return what if n == 1 else f"{what}[{i}]"


def _as_array(value, name):
    """An ndarray (memmaps kept as they are) or a lazily read array, checked for type and
    shape; its values are checked when the fit reads them."""
    if not isinstance(value, np.ndarray) and all(
            hasattr(value, attribute) for attribute in ("shape", "dtype", "__getitem__")) \
            and not isinstance(value, (list, tuple)):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numeric array-like; {exc}") from None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array (bool, integer, float or complex); "
                        f"got dtype {dtype}")
    if len(array.shape) < 1:
        raise ValueError(f"{name} must have at least 1 dimension; got shape {array.shape}")
    if int(np.prod(array.shape)) == 0:
        raise ValueError(f"{name} must not be empty; got shape {array.shape}")
    return array


def _unmasked_input(x, name):
    """The data of a numpy.ma input; its masked samples would be read by the windows of
    many outputs, which cannot be left out here: refused, saying what works."""
    if isinstance(x, np.ma.MaskedArray):
        if np.ma.getmaskarray(x).any():
            raise ValueError(f"{name} is a masked array with masked samples: the fit cannot "
                             f"leave out the windows that read them; fill them "
                             f"({name.split('[')[0]}.filled(value)) and mask the outputs "
                             f"they reach with mask=")
        return np.ma.getdata(x)
    return x


def _unmasked_output(y, mask, channel_axis):
    """The data of a numpy.ma output and `mask` narrowed to its unmasked samples."""
    if not isinstance(y, np.ma.MaskedArray):
        return y, mask
    unmasked = ~np.ma.getmaskarray(y)
    y = np.ma.getdata(y)
    if unmasked.all():
        return y, mask
    if mask is None:
        return y, unmasked
    mask = np.asarray(mask)
    if mask.dtype != bool:
        return y, mask  # refused, naming it, where masks are checked
    if channel_axis is not None and mask.ndim == unmasked.ndim - 1:
        mask = np.expand_dims(mask, channel_axis % unmasked.ndim)
    try:
        return y, mask & unmasked
    except ValueError:
        return y, mask  # a mask of the wrong shape: refused, naming it, below


def _is_pair_list(value):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(item, np.ndarray) or is_dask(item) for item in value)


def _as_pairs(input, output):
    """Two lists of arrays: one pair, or several that share the kernel."""
    several_in, several_out = _is_pair_list(input), _is_pair_list(output)
    if several_in != several_out:
        which = "input" if several_in else "output"
        raise ValueError(f"{which} is a sequence of ndarrays (several pairs) but the other is "
                         f"not; pass equal-length sequences of ndarrays (or dask arrays) for "
                         f"several pairs")
    if not several_in:
        return [input], [output]
    if len(input) != len(output):
        raise ValueError(f"input and output must have the same number of pairs; got "
                         f"{len(input)} inputs and {len(output)} outputs")
    return list(input), list(output)


def _as_masks(mask, n_pairs, name="mask"):
    """One mask (or weights) per pair."""
    if mask is None:
        return [None] * n_pairs
    if n_pairs == 1:
        return [mask]
    if not (isinstance(mask, (list, tuple)) and len(mask) == n_pairs):
        raise ValueError(f"{name} must be a sequence of {n_pairs} "
                         f"{'masks' if name == 'mask' else 'arrays'}, one per pair")
    return list(mask)


def _channels_last(x, y, channel_axis, n_spatial, i, n):
    """Sources with channels last (one channel without a channel axis); flag a grey output."""
    y_name = _name("output", i, n)
    if channel_axis is None:
        if y.ndim != x.ndim:
            raise ValueError(f"{y_name} must have as many dimensions as input ({x.ndim}) "
                             f"without a channel_axis; got shape {y.shape}")
        return Source(x), Source(y), False
    if x.ndim != n_spatial + 1:
        raise ValueError(f"{_name('input', i, n)} must have {n_spatial + 1} dimensions like "
                         f"the first input; got shape {x.shape}")
    if y.ndim == x.ndim:
        return Source(x, channel_axis), Source(y, channel_axis), False
    if y.ndim == n_spatial:
        return Source(x, channel_axis), Source(y), True
    raise ValueError(f"{y_name} must have {x.ndim} dimensions (with channels) or {n_spatial} "
                     f"(grey) for an input of shape "
                     f"{tuple(s for a, s in enumerate(x.shape) if a != channel_axis)} with "
                     f"channels; got shape {y.shape}")


def _mask(mask, output, channel_axis, grey, i, n):
    """The mask as a Source, channels last, shaped like the output or its spatial axes."""
    if mask is None:
        return None
    name = "mask" if n == 1 else f"mask[{i}]"
    if isinstance(mask, np.ndarray) or is_dask(mask):  # (a dask array stays lazy)
        if mask.dtype != bool:  # before the numeric checks: only booleans are masks
            raise TypeError(f"{name} must be a boolean array; got dtype {mask.dtype}")
        mask = _as_array(mask, name)
    else:
        try:
            mask = np.asarray(mask)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a boolean array (or nested lists of booleans of "
                            f"one shape); got {type(mask).__name__} of ragged rows") from None
    if mask.dtype != bool:
        raise TypeError(f"{name} must be a boolean array; got dtype {mask.dtype}")
    return _over_output(mask, output, channel_axis, grey, name)


def _over_output(array, output, channel_axis, grey, name):
    """A per-sample array (a mask, weights) as a Source, channels last, shaped like the
    output or its spatial axes; else an error naming it."""
    shape = output.shape  # (*S_out, C_out)
    ndim = len(array.shape)
    if channel_axis is not None and not grey and ndim == len(shape):
        source = Source(array, channel_axis)
    elif ndim == len(shape) - 1:
        source = Source(array)
    else:
        source = None
    if source is None or source.shape not in (shape, shape[:-1] + (1,)):
        raise ValueError(f"{name} has shape {tuple(array.shape)}; expected the output's "
                         f"shape or its spatial shape")
    return source


def _weights(weights, output, channel_axis, grey, i, n):
    """The weights as a Source, channels last, shaped like the output or its spatial axes;
    their values (finite, >= 0) are checked as they are read."""
    if weights is None:
        return None
    name = "weights" if n == 1 else f"weights[{i}]"
    weights = _as_array(weights, name)
    if np.dtype(weights.dtype).kind in "bc":
        raise TypeError(f"{name} must be real numbers (integer or float); got dtype "
                        f"{weights.dtype}" + (": a boolean selection is mask="
                                              if weights.dtype == bool else ""))
    if isinstance(weights, np.ndarray) and not isinstance(weights, np.memmap):
        # in memory: every value checked now (those the fit reads would be, as read)
        if not (np.isfinite(weights).all() and weights.min() >= 0):
            bad = tuple(int(i) for i in np.argwhere(~(np.isfinite(weights)
                                                      & (weights >= 0)))[0])
            raise ValueError(f"{name} must be finite and >= 0 (0 leaves a sample out, like "
                             f"mask=); got {float(weights[bad])!r} at index {bad}")
    return _over_output(weights, output, channel_axis, grey, name)


def _layout(channel_axis, channels, grey_output, n_in, n_out):
    if channel_axis is None:
        return "shared"
    if grey_output:
        if channels == "separate":
            raise ValueError("channels='separate' needs an output with channels; a grey "
                             "output from a colour input is fitted with a (*size, C_in) "
                             "kernel (channels='shared' or 'full')")
        return "full"
    if channels != "full" and n_in != n_out:
        raise ValueError(f"channels={channels!r} needs as many output channels as input "
                         f"channels; got {n_in} in and {n_out} out (use channels='full')")
    return channels
