"""Statistics: the sufficient statistics of the fit's least-squares systems, merged by `+`.

For a support (a box of taps) and a set of output samples, each system's Gram matrix
``[A 1]^H [A 1]``, its correlation with the targets ``[A 1]^H B`` and the targets' energy are
sums over samples, so tiles, bands, pairs and machines simply add. The Gram matrix of a box
holds that of every support inside it as a sub-block (`Statistics.restrict`).
"""

import dataclasses
import itertools

import numpy as np

from ._geometry import Box, Support
from ._operator import Operator

# Up to this many unknowns per system (m^2 products per sample against a few FFTs), the Gram
# matrix of a tile is summed from its windows; above it, from the FFT less edge terms.
DIRECT_UNKNOWNS = 30
# Windows materialised at once on the direct path (rows x unknowns), at most a tile's worth.
DIRECT_CHUNK = 1 << 18


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Sufficient statistics of the fit's systems for the taps of `support`.

    Each of the S systems (one shared kernel; one per channel for 'separate'; one for every
    output channel of a 'full' kernel, or one per output channel when they use different
    samples) has unknowns ``[kernel (m * n_taps_channels), bias (groups)]`` and R right-hand
    sides. The kernel unknowns are ordered tap-major, input channel minor.

    Attributes
    ----------
    support : Support
    channels : int
        Input channels per tap in the unknowns (C_in for 'full', else 1).
    groups : int
        Bias groups: a bias per input channel for 'shared', else one.
    gram : (S, M, M) ndarray
        ``[A 1]^H [A 1]``; its bias block's diagonal counts the samples of each group.
    rhs : (S, M, R) ndarray
        ``[A 1]^H B``: the bias rows are the sums of the targets.
    yy : (S, R) ndarray
        Sums of ``|B|^2``.
    n : (S, groups) ndarray
        Samples per bias group. With weights, every sum above is weighted (the bias block's
        diagonal holds the weights' sums); `n` still counts the samples.
    """

    support: Support
    channels: int
    groups: int
    gram: np.ndarray
    rhs: np.ndarray
    yy: np.ndarray
    n: np.ndarray

    def __add__(self, other):
        return self.copy().add(other)

    def __sub__(self, other):
        return self.copy().add(other, -1)

    def copy(self):
        return dataclasses.replace(self, gram=self.gram.copy(), rhs=self.rhs.copy(),
                                   yy=self.yy.copy(), n=self.n.copy())

    def add(self, other, sign=1):
        """Add `other` into these statistics' own arrays (in place); return them."""
        if (self.support, self.channels, self.groups) != (other.support, other.channels,
                                                          other.groups):
            raise ValueError("statistics of different supports or layouts do not add")
        for name in ("gram", "rhs", "yy", "n"):
            mine = getattr(self, name)
            if sign > 0:
                mine += getattr(other, name)
            else:
                mine -= getattr(other, name)
        return self

    @property
    def n_kernel(self):
        return self.support.size * self.channels

    @property
    def counts(self):
        """Samples per system and bias group, (S, groups). (The Gram matrix's bias block
        holds their weights' sums, which are the counts when the samples carry no
        weights.)"""
        return self.n.round().astype(np.int64)

    @property
    def weight_sums(self):
        """The weights' sums per system and bias group, (S, groups): the counts without
        weights."""
        m = self.n_kernel
        return np.real(np.diagonal(self.gram[:, m:, m:], axis1=1, axis2=2))

    @property
    def n_rows(self):
        """Samples (equations) per system, (S,)."""
        return self.counts.sum(axis=1)

    def unknowns(self, support):
        """Indices of the kernel unknowns of `support` (inside this one), then the bias."""
        taps = support.positions_in(self.support)
        kernel = (taps[:, np.newaxis] * self.channels + np.arange(self.channels)).ravel()
        return kernel, self.n_kernel + np.arange(self.groups)

    def restrict(self, support):
        """The statistics of a support inside this one, on the same samples."""
        if support == self.support:
            return self
        kernel, bias = self.unknowns(support)
        index = np.concatenate([kernel, bias])
        return Statistics(support, self.channels, self.groups,
                          self.gram[:, index[:, np.newaxis], index],
                          self.rhs[:, index], self.yy.copy(), self.n.copy())  # (its own)


def unknowns(support, layout, n_in):
    """(input channels per tap, bias groups, unknowns) of each system of a fit's layout."""
    channels = n_in if layout == "full" else 1
    groups = n_in if layout == "shared" else 1
    return channels, groups, support.size * channels + groups


def zeros(support, layout, n_in, n_out, joint, dtype):
    """Empty statistics for a fit's layout (see `Statistics`)."""
    channels, groups, size = unknowns(support, layout, n_in)
    systems = 1 if layout == "shared" or (layout == "full" and joint) else n_out
    columns = n_out if layout == "full" and joint else 1
    return Statistics(support, channels, groups, np.zeros((systems, size, size), dtype),
                      np.zeros((systems, size, columns), dtype), np.zeros((systems, columns)),
                      np.zeros((systems, groups)))


def gram_bytes(problem, support, evidence=None):
    """Bytes the normal equations of a fit take at their peak: the Gram matrices of the top
    band and the total (and of the evidence's support), and the solver's working copies
    (the centred matrix, its factor and inverse, or an eigendecomposition)."""
    channels = problem.n_in if problem.layout == "full" else 1
    systems = 1 if problem.layout == "shared" or (problem.layout == "full" and problem.joint) \
        else problem.n_out
    item = 16 if np.iscomplexobj(np.zeros(0, problem.dtype)) else 8

    def square(taps):
        return float(taps.size * channels + channels) ** 2 * item

    largest = square(support) if evidence is None else max(square(support), square(evidence))
    return systems * (2 * square(support) + (0 if evidence is None else square(evidence))) \
        + 3 * largest


def available_memory():
    """Bytes of memory available now (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


# --- the pass over the pixels -------------------------------------------------------------

# Samples (times channels) per tile: bounds the memory of a tile's FFTs and windows. Tiles of
# the same shape (from many pairs) are stacked into batches of up to this size.
TILE_ELEMENTS = 1 << 22


def tiles(problem, support, boxes):
    """Every pair's output samples in `boxes`, as (band, pair, box): bands are the top and
    bottom halves of each box's rows, cut into tiles of at most TILE_ELEMENTS samples. All
    the top halves come first, then the bottom halves, so that the tiles of pairs of one
    shape follow each other (and are stacked into batches).

    A tile spans whole rows, unless the output is stored in chunks (dask, zarr) wider than
    a tile's share of an axis: then it is cut where they begin too (`_groups`), so that it
    reads a few chunks rather than whole rows of them."""
    channels = max(problem.n_in, problem.n_out)
    halo = [k - 1 for k in support.shape]
    for band in (0, 1):
        for pair, box in zip(problem.pairs, boxes):
            if box.empty:
                continue
            first, last = box.start[0], box.stop[0]
            middle = first + (last - first) // 2 if last - first >= 2 else last
            start, stop = ((first, middle), (middle, last))[band]
            parts = _groups(box, pair.grid)
            widest = max(part.shape[1:] for part in parts) if len(box.shape) > 1 else ()
            per_row = channels * int(np.prod([n + h for n, h in zip(widest, halo[1:])]))
            step = max(1, TILE_ELEMENTS // max(1, per_row) - halo[0])
            for row in range(start, stop, step):
                for part in parts:
                    yield band, pair, part.rows(row, min(row + step, stop))


def _groups(box, grid):
    """`box` cut along every axis but the first where the storage chunks of `grid` begin:
    whole chunks grouped up to a tile's share of the axis (TILE_ELEMENTS ** (1 / D)), at
    least one chunk a group. A box within one share along an axis is not cut there."""
    if grid is None or len(box.shape) < 2:
        return [box]
    share = int(TILE_ELEMENTS ** (1 / len(box.shape)))
    ranges = []
    for a, b, bounds in zip(box.start[1:], box.stop[1:], grid[1:]):
        groups, begin, end = [], a, a
        for edge in [c for c in bounds if a < c < b] + [b]:
            if end > begin and edge - begin > share:
                groups.append((begin, end))
                begin = end
            end = edge
        ranges.append(groups + [(begin, end)])
    return [Box((box.start[0],) + tuple(lo for lo, _ in part),
                (box.stop[0],) + tuple(hi for _, hi in part))
            for part in itertools.product(*ranges)]


def batches(problem, support, boxes, pad_mode, where=False):
    """Tiles of one band and shape read and stacked along the batch axis, within the tile
    budget: one FFT and one set of GEMMs for many small pairs. One batch is read at a
    time. Yields (band, Block), or with `where` (band, Block, what to read it again)."""
    for band, pieces in batch_plan(problem, support, boxes):
        block = read_batch(problem, support, pieces, pad_mode)
        yield (band, block, pieces) if where else (band, block)


def batch_plan(problem, support, boxes):
    """The batches of `batches`, before anything is read: (band, ((pair, box), ...))."""
    pending, key, size = [], None, 0
    halo = np.array(support.shape) - 1

    for band, pair, box in tiles(problem, support, boxes):
        here = (band, box.shape)
        elements = int(np.prod(np.array(box.shape) + halo)) * problem.n_in
        if pending and (here != key or size + elements > TILE_ELEMENTS):
            yield key[0], tuple(pending)
            pending, size = [], 0
        pending.append((pair, box))
        key, size = here, size + elements
    if pending:
        yield key[0], tuple(pending)


def read_batch(problem, support, pieces, pad_mode):
    """The Blocks of (pair, box) `pieces` (boxes of one shape), stacked along the batch
    axis: each read into its slot of the batch."""
    (pair, box), rest = pieces[0], pieces[1:]
    first = pair.block(support, box, pad_mode, problem.fillvalue, problem.dtype)
    if not rest:
        return first
    count = len(pieces)
    names = ("extended", "target", "usable") + (() if first.weight is None else ("weight",))
    batch = type(first)(*(np.empty((count,) + getattr(first, name).shape[1:],
                                   dtype=getattr(first, name).dtype) for name in names))
    for name in names:
        getattr(batch, name)[0] = getattr(first, name)[0]
    for i, (pair, box) in enumerate(rest, start=1):
        pair.block(support, box, pad_mode, problem.fillvalue, problem.dtype,
                   out=type(first)(*(getattr(batch, name)[i] for name in names)))
    return batch


@dataclasses.dataclass(frozen=True)
class Tile:
    """A tile kept in memory: the operator on its extended block (for the taps `support`,
    with the block's FFT once computed), its targets and which of them are used.

    A tile whose FFT is kept lets its block go (the forward pass and its adjoint need only
    the FFT); `windows` reads it again (`pieces`, `pad_mode`) if ever asked.
    """

    band: int
    support: Support
    applied: object
    target: np.ndarray
    usable: np.ndarray
    pieces: tuple = ()
    pad_mode: object = None
    weight: object = None

    @property
    def origins(self):
        """Each slot's first output sample in its image (None for a tile read without its
        pieces)."""
        if not self.pieces:
            return None
        return [box.start for _, box in self.pieces]

    def windows(self, problem):
        """Every 'valid' window of the tile's block, (B, *S_valid, C_in, *K)."""
        applied = self.applied
        if applied.block is None:
            block = read_batch(problem, self.support, self.pieces, self.pad_mode).extended
            return applied.operator.on(block).windows()
        return applied.windows()


# Tiles are kept in memory for the residual pass (instead of being read and transformed again)
# when they take at most this many times a tile's budget of float64 samples (512 MB).
CACHED_TILES = 16


# Up to this many bytes of blocks, kept tiles keep their blocks too (the dense path, for small
# problems, builds its rows from them); above it, only their transforms.
KEPT_BLOCKS = 64 * 2**20


def _memory(problem, support, boxes):
    """Bytes of every tile of a pass (transform, targets; and blocks) and of its blocks:
    known before anything is read, so a pass keeps all its tiles or none."""
    total = blocks = 0
    for _, _, box in tiles(problem, support, boxes):
        block = 8 * problem.n_in * int(np.prod([n + k - 1 for n, k in zip(box.shape,
                                                                          support.shape)]))
        padded = int(np.prod([n + 2 * k - 2 for n, k in zip(box.shape, support.shape)]))
        total += block + 9 * padded * problem.n_in + 9 * box.size * problem.n_out
        blocks += block
    return total, blocks


def accumulate(problem, support, boxes, pad_mode, keep=False, evidence=None):
    """One pass over the samples `boxes` of every pair: the statistics of `support`, for the
    top halves of the rows (band 0) and in total (band 1 is their difference).

    With `evidence` (a larger support), also its statistics, on a central part of the
    samples (`evidence_pieces`).

    Returns (band 0, total, the tiles kept in memory or None, the evidence or None).
    """
    if problem.dask:  # a task per batch on Dask's workers; no tiles kept on the client
        from ._dask import accumulate as accumulate_on_dask
        return accumulate_on_dask(problem, support, boxes, pad_mode, evidence)
    band0, total = empty(problem, support), empty(problem, support)
    extra = None if evidence is None else evidence_statistics(
        problem, evidence, evidence_pieces(problem, support, evidence, boxes), pad_mode)
    total_bytes, block_bytes = _memory(problem, support, boxes) if keep else (0, 0)
    kept = [] if keep and total_bytes <= CACHED_TILES * TILE_ELEMENTS * 8 else None
    done = problem.progress.start("statistics", sum(1 for _ in tiles(problem, support, boxes))
                                  if problem.progress else None)
    for band, block, pieces in batches(problem, support, boxes, pad_mode, where=True):
        applied = batch_statistics(problem, support, block, band0 if band == 0 else total)
        if kept is not None:
            if applied._spectra is not None and block_bytes > KEPT_BLOCKS:
                applied.block = None  # its transform is all the residual pass needs
            kept.append(Tile(band, support, applied, block.target, block.usable, pieces,
                             pad_mode, block.weight))
        done(len(pieces))
    total.add(band0)
    return band0, total, kept, extra


def empty(problem, support):
    """Empty statistics of `support` for the problem's layout."""
    return zeros(support, problem.layout, problem.n_in, problem.n_out, problem.joint,
                 problem.dtype)


def batch_statistics(problem, support, block, into):
    """One batch's statistics of `support`, added into `into`. Returns the operator on the
    block."""
    operator = Operator(support.shape, problem.layout, problem.n_in, problem.n_out)
    applied = operator.on(block.extended)
    tile_statistics(applied, block.target, block.usable, support, problem.layout,
                    problem.joint, into=into, weight=block.weight)
    return applied


# The evidence is gathered on this many samples per unknown of a system (at most all).
EVIDENCE_SAMPLES = 200


def evidence_pieces(problem, support, evidence, boxes):
    """The samples the evidence's statistics are gathered on, as (pair, box) pieces: a box
    at the centre of each pair's samples in turn (less a margin of the evidence's extra taps,
    so that its windows read only what the fit's windows may), until they number
    EVIDENCE_SAMPLES per unknown. The evidence compares fits on its own samples, and a
    central part of many samples is plenty: its cost does not grow with the image. Decided
    from the shapes alone (masked samples count)."""
    if evidence is None:
        return ()
    wanted = EVIDENCE_SAMPLES * unknowns(evidence, problem.layout, problem.n_in)[2]
    pieces = []
    for pair, box in zip(problem.pairs, boxes):
        if wanted <= 0:
            break
        inner = Box(tuple(a + lo_s - lo_e for a, lo_s, lo_e in zip(box.start, support.lo,
                                                                   evidence.lo)),
                    tuple(b - (hi_e - hi_s) for b, hi_s, hi_e in zip(box.stop, support.hi,
                                                                     evidence.hi)))
        if inner.empty:
            continue
        sides = _central_sides(inner.shape, wanted)
        start = tuple(a + (n - k) // 2 for a, n, k in zip(inner.start, inner.shape, sides))
        pieces.append((pair, Box(start, tuple(a + k for a, k in zip(start, sides)))))
        wanted -= int(np.prod(sides))
    return tuple(pieces)


def _central_sides(shape, wanted):
    """Sides of a box of `shape`'s proportions holding at least `wanted` samples (all of
    them when there are no more)."""
    if int(np.prod(shape)) <= wanted:
        return tuple(shape)
    factor = (wanted / np.prod(shape)) ** (1 / len(shape))
    return tuple(min(n, max(1, int(np.ceil(n * factor)))) for n in shape)


def evidence_statistics(problem, evidence, pieces, pad_mode):
    """The evidence's statistics on its `pieces`, each read for the evidence's own windows."""
    extra = empty(problem, evidence)
    operator = Operator(evidence.shape, problem.layout, problem.n_in, problem.n_out)
    for pair, box in pieces:
        block = pair.block(evidence, box, pad_mode, problem.fillvalue, problem.dtype)
        tile_statistics(operator.on(block.extended), block.target, block.usable, evidence,
                        problem.layout, problem.joint, into=extra, weight=block.weight)
    return extra


@dataclasses.dataclass(frozen=True)
class FirstPass:
    """The statistics of the first pass: `support` over the samples `boxes` (per pair), the
    input extended by `pad_mode` (None: windows inside the input), for the top half of the
    rows and in total; the statistics of a larger `evidence_support` on nearly the same
    samples (its windows that fit in the same blocks, on the first tiles when they hold
    many), when asked for; its tiles, when they
    fit in memory; and the fits made from it, kept for this call (`fits`)."""

    support: Support
    boxes: tuple
    pad_mode: object
    top: Statistics
    total: Statistics
    tiles: object = None
    evidence_support: object = None
    evidence: object = None
    fits: dict = dataclasses.field(default_factory=dict)

    @property
    def bands(self):
        """The statistics of the top and the bottom halves of the rows."""
        return self.top, self.total - self.top


def first_pass(problem, support, boxes, pad_mode, evidence=None):
    """One pass over the pixels: the statistics every later question is answered from."""
    top, total, kept, extra = accumulate(problem, support, boxes, pad_mode, keep=True,
                                         evidence=evidence)
    return FirstPass(support, tuple(boxes), pad_mode, top, total,
                     None if kept is None else tuple(kept), evidence, extra)


@dataclasses.dataclass(frozen=True)
class DesignPass:
    """A design's statistics, and its tiles when they are in memory (None: read them)."""

    statistics: Statistics
    tiles: object


def _reusable(first, design):
    """Whether the first pass's samples lie inside the design's and its windows do not
    depend on a different edge rule."""
    return first is not None and first.support.contains(design.support) and all(
        large.contains(small) for small, large in zip(first.boxes, design.boxes)) and (
        first.pad_mode is None or first.pad_mode == design.pad_mode)


def _frames(problem, first, design):
    """The design's samples outside the first pass's, as thin tiles read now."""
    support = design.support
    operator = Operator(support.shape, problem.layout, problem.n_in, problem.n_out)
    for pair, small, large in zip(problem.pairs, first.boxes, design.boxes):
        for piece in (large.minus(small) if not small.empty else [large]):
            if not piece.empty:
                block = pair.block(support, piece, design.pad_mode, problem.fillvalue,
                                   problem.dtype)
                yield Tile(0, support, operator.on(block.extended), block.target,
                           block.usable, weight=block.weight)


def design_pass(problem, first, design):
    """The statistics of a design (its support, samples and edge rule).

    From the first pass when `_reusable`: a sub-block, plus the samples in between, read as
    thin tiles; otherwise from a pass of its own. The tiles come along when they are in
    memory.
    """
    support = design.support
    if not _reusable(first, design):
        _, total, kept, _ = accumulate(problem, support, design.boxes, design.pad_mode,
                                       keep=True)
        return DesignPass(total, None if kept is None else tuple(kept))
    total = first.total.restrict(support)
    frames = tuple(_frames(problem, first, design))
    if frames:
        total = total.copy() if total is first.total else total
        for tile in frames:
            tile_statistics(tile.applied, tile.target, tile.usable, support, problem.layout,
                            problem.joint, into=total, weight=tile.weight)
    return DesignPass(total, None if first.tiles is None else first.tiles + frames)


def statistics_for(problem, first, design):
    """The statistics of a design (see `design_pass`)."""
    return design_pass(problem, first, design).statistics


def design_tiles(problem, first, design, known=None):
    """The tiles of a design: those in memory (`known`'s, or the first pass's and the
    frames between), or else read anew."""
    if known is not None and known.tiles is not None:
        yield from known.tiles
    elif first is not None and first.tiles is not None and _reusable(first, design):
        yield from first.tiles
        yield from _frames(problem, first, design)
    else:
        operator = Operator(design.support.shape, problem.layout, problem.n_in,
                            problem.n_out)
        for band, block, pieces in batches(problem, design.support, design.boxes,
                                           design.pad_mode, where=True):
            yield Tile(band, design.support, operator.on(block.extended), block.target,
                       block.usable, pieces, design.pad_mode, block.weight)


def embed(kernel, support, outer):
    """A kernel of `support` (operator layout: taps first) as one of the larger `outer`."""
    if support == outer:
        return kernel
    out = np.zeros(outer.shape + kernel.shape[support.ndim:], dtype=kernel.dtype)
    out[_within(support, outer)] = kernel
    return out


def taps(array, support, outer):
    """The taps of `support` from an array over the taps of `outer` (taps first)."""
    return array if support == outer else array[_within(support, outer)]


def _within(support, outer):
    return tuple(slice(a - b, a - b + k) for a, b, k in zip(support.lo, outer.lo,
                                                           support.shape))


# --- one tile ---------------------------------------------------------------------------------

def tile_statistics(applied, target, usable, support, layout, joint, into=None,
                    weight=None):
    """Statistics of the 'valid' windows of one block of the operator (`applied`), added
    into `into` (in place) or into new ones; returned.

    `target` and `usable` are (B, *S_valid, C_out): the outputs at the windows and which of
    them count; `weight` (same shape, or None) weights each. Small problems, and weighted
    ones (a weighted Gram matrix has no FFT form), sum the windows directly; large ones use
    the block's FFT.
    """
    op = applied.operator
    if into is None:
        into = zeros(support, layout, op.n_in, op.n_out, joint, applied.block.dtype)
    m = support.size * (op.n_in if layout == "full" else 1)
    if m <= DIRECT_UNKNOWNS or not applied.use_fft or weight is not None:
        _direct(into, applied, target, usable, layout, weight)
    else:
        _spectral(into, applied, target, usable, layout)
    return into


def _system_rows(layout, joint, n_in, n_out):
    """Per system: (input channels of its windows, output channels of its targets, the
    channel whose usable flags pick its rows)."""
    if layout == "shared":
        return [(c, c, c) for c in range(n_in)]  # all one system, bias group c
    if layout == "separate":
        return [(c, c, c) for c in range(n_out)]
    if joint:
        return [(slice(None), slice(None), 0)]
    return [(slice(None), j, j) for j in range(n_out)]


def _direct(stats, applied, target, usable, layout, weight=None):
    """Sums over the used windows themselves (weighted by `weight` when given), a chunk of
    rows at a time (into `stats`)."""
    op = applied.operator
    gram, rhs, yy = stats.gram, stats.rhs, stats.yy
    ndim = len(op.shape)
    windows = np.moveaxis(applied.windows(), ndim + 1, -1)  # (B, *V, *K, C_in): taps major
    lead = windows.shape[:ndim + 1]
    flat_target = target.reshape(-1, target.shape[-1])
    flat_usable = usable.reshape(-1, usable.shape[-1])
    flat_weight = None if weight is None else weight.reshape(-1, weight.shape[-1])
    m = stats.n_kernel
    joint = layout == "full" and gram.shape[0] == 1
    for s, (channel, outputs, rows_of) in enumerate(_system_rows(layout, joint, op.n_in,
                                                                 op.n_out)):
        system = 0 if layout == "shared" else s
        group = s if layout == "shared" else 0
        selected = np.flatnonzero(flat_usable[:, rows_of])
        step = max(1, min(DIRECT_CHUNK, TILE_ELEMENTS) // max(1, m))
        upper = None  # weighted: the upper triangle of A^H W A, by syrk (half a GEMM)
        for start in range(0, selected.size, step):
            rows = selected[start:start + step]
            W = windows[np.unravel_index(rows, lead)][..., channel].reshape(rows.size, -1)
            y = flat_target[rows][:, outputs].reshape(rows.size, -1)
            if flat_weight is None:
                Wh, total = W.conj().T, rows.size
                gram[system, :m, :m] += Wh @ W
                rhs[system, :m] += Wh @ y
                sums = W.sum(axis=0)
            else:  # rows scaled by sqrt(w): A^H W A, A^H W y, and sums of w a
                w = flat_weight[rows, rows_of]
                root = np.sqrt(w)
                W *= root[:, np.newaxis]  # (the chunk's own copy)
                total = float(w.sum())
                upper = _add_rank_k(upper, W)
                rhs[system, :m] += W.conj().T @ (root[:, np.newaxis] * y)
                sums = root @ W
            gram[system, m + group, :m] += sums
            gram[system, :m, m + group] += np.conj(sums)
            gram[system, m + group, m + group] += total
            stats.n[system, group] += rows.size
            if flat_weight is None:
                rhs[system, m + group] += y.sum(axis=0)
                yy[system] += np.sum(np.abs(y) ** 2, axis=0)
            else:
                rhs[system, m + group] += w @ y
                yy[system] += w @ (np.abs(y) ** 2)
        if upper is not None:
            upper = np.triu(upper)
            gram[system, :m, :m] += upper + np.triu(upper, 1).conj().T


def _add_rank_k(upper, rows):
    """``upper + rows^H rows`` in its upper triangle (the lower is left undefined), by BLAS
    syrk (herk for complex rows) on the rows' transpose (Fortran order: no copy); a new
    accumulator when `upper` is None."""
    from scipy.linalg import blas

    if np.iscomplexobj(rows):
        a, rank_k = rows.conj().T, blas.zherk  # a a^H = rows^H rows
    else:
        a, rank_k = rows.T, blas.dsyrk
    if upper is None:
        return rank_k(1.0, a, lower=0)
    return rank_k(1.0, a, beta=1.0, c=upper, lower=0, overwrite_c=1)


def _spectral(stats, applied, target, usable, layout):
    """The Gram matrices from the block's FFT less edge terms, added in place into `stats`;
    the masked rows as a correction (or, when most rows are masked, the kept windows
    directly)."""
    op = applied.operator
    shape = op.shape
    m = stats.n_kernel
    gram, rhs, yy = stats.gram, stats.rhs, stats.yy
    block = applied.block
    n_in = op.n_in
    joint = layout == "full" and gram.shape[0] == 1
    sums_cache, windows = {}, None

    def all_rows_sums(c):
        if c not in sums_cache:
            sums_cache[c] = _box_sums(block[..., c], shape)
        return sums_cache[c]

    for s, (channel, outputs, rows_of) in enumerate(_system_rows(layout, joint, n_in,
                                                                 op.n_out)):
        system = 0 if layout == "shared" else s
        group = s if layout == "shared" else 0
        kept = usable[..., rows_of]
        n_kept = int(kept.sum())
        masked = ~kept
        channels = [channel] if isinstance(channel, int) else list(range(n_in))
        y = (target[..., outputs:outputs + 1] if isinstance(outputs, int) else target)
        if n_kept < kept.size:
            y = np.where(kept[..., np.newaxis], y, 0)
        out = gram[system, :m, :m]
        if 2 * int(masked.sum()) > kept.size:  # mostly masked: the kept windows directly
            if windows is None:
                windows = np.moveaxis(applied.windows(), len(shape) + 1, -1)
            W = windows[kept][..., channels].reshape(n_kept, m)
            out += W.conj().T @ W
            sums = W.sum(axis=0)
            r = W.conj().T @ y[kept]
        else:
            k = len(channels)
            for i, c in enumerate(channels):
                for j, d in enumerate(channels):
                    if j == i:
                        valid_gram(applied, c, c, out=out[i::k, i::k])
                    elif j > i:
                        block_cd = valid_gram(applied, c, d)
                        out[i::k, j::k] += block_cd
                        out[j::k, i::k] += block_cd.conj().T
            sums = np.stack([all_rows_sums(c) for c in channels], axis=-1).ravel()
            r = _correlation(applied, y, channels, ("rhs", s), shape)
            if masked.any():
                if windows is None:
                    windows = np.moveaxis(applied.windows(), len(shape) + 1, -1)
                W = windows[masked][..., channels].reshape(int(masked.sum()), m)
                out -= W.conj().T @ W
                sums = sums - W.sum(axis=0)
        rhs[system, :m] += r
        gram[system, m + group, :m] += sums
        gram[system, :m, m + group] += np.conj(sums)
        gram[system, m + group, m + group] += n_kept
        stats.n[system, group] += n_kept
        flat = y.reshape(-1, y.shape[-1])  # masked samples are zero: they add nothing
        rhs[system, m + group] += flat.sum(axis=0)
        yy[system] += np.real(np.einsum("ij,ij->j", flat.conj(), flat))


def _correlation(applied, y, channels, key, shape):
    """``A^H y`` (tap-major, channel-minor), (m, R), from the cyclic correlations
    ``c[t] = sum_b sum_m conj(x_c[b, m]) y[b, m + t]`` of the block's input `channels` with
    the columns of `y`: one product of transforms per channel and column, kept under `key`.
    Tap j meets ``y[n]`` at ``x[n + j]``."""
    index = [-np.arange(k) for k in shape]

    def part(values, name):
        def spectrum():
            R = applied.transform(values)  # (B, *L, R)
            X = applied.spectra
            if X.shape[0] == 1 and len(channels) == 1 and R.shape[-1] == 1:
                product = R[0, ..., 0] * np.conj(X[0, ..., channels[0]])
                return product[..., np.newaxis, np.newaxis]
            return np.einsum("b...c,b...r->...cr", np.conj(X[..., channels]), R)

        return applied.lags((key, name), spectrum, index)  # (*K, k, R)

    if applied.real and np.iscomplexobj(y):
        correlation = part(y.real, "real") + 1j * part(y.imag, "imaginary")
    else:
        correlation = part(y, "")
    return correlation.reshape(-1, correlation.shape[-1])


def _box_sums(block, shape):
    """``sum_n x[n + p]`` over the 'valid' windows and the batch, for every tap p, flat.

    One axis at a time: the sum along the axis, less the few samples before p and after
    p + V (cumulative sums over the K - 1 slices at each end only), so the block is summed
    once and every later step works on an array K long along the axes already done.
    """
    out = block[0] if block.shape[0] == 1 else block.sum(axis=0)
    for axis, k in enumerate(shape):
        n = out.shape[axis]
        total = out.sum(axis=axis, keepdims=True)
        head = np.take(out, np.arange(k - 1), axis=axis)
        tail = np.take(out, np.arange(n - k + 1, n), axis=axis)
        zero = np.zeros_like(total)
        before = np.concatenate([zero, np.cumsum(head, axis=axis)], axis=axis)  # first p
        after = np.concatenate([np.flip(np.cumsum(np.flip(tail, axis), axis=axis), axis),
                                zero], axis=axis)  # the last k - 1 - p
        out = total - before - after
    return out.ravel()


# --- the Gram matrix of the valid windows --------------------------------------------------

def valid_gram(applied, c, d, out=None):
    """``G[p, q] = sum_b sum_n conj(x_c[b, n + p]) x_d[b, n + q]`` over the 'valid' windows,
    flat (m, m); added into `out` (in place, any strides) when given.

    The full correlation of the block (one product of its FFTs) counts every pair of samples
    at lag ``q - p``; the windows of the valid box miss the pairs that start in a strip of
    width ``K - 1`` at either end of some axis. By inclusion and exclusion over the axes,
    for each set T of axes and each choice of ends, those are the pairs that start before
    ``p`` along T (after ``p + V`` at a high end): sums along the diagonals of each
    (p_t, q_t) plane of the correlations of the ``K - 1`` end slices along T (GEMMs over the
    other axes). Cost O(K^(D+1) S^(D-1) + K^(2D+1)); nothing as large as the block is made,
    and nothing as large as G but G itself (and one GEMM's product).
    """
    op = applied.operator
    shape = op.shape
    ndim = len(shape)
    m = int(np.prod(shape))
    if out is None:
        out = np.zeros((m, m), dtype=np.result_type(applied.block.dtype, np.float64))
    grid = _grid(out, shape)
    # full correlation F[d] = sum_m conj(x_c[m]) x_d[m + d], d in (-(K-1), K-1)
    full = applied.autocorrelation(c, d)
    a, b = applied.block[..., c], applied.block[..., d]
    # T = {} and, in 2-D and up, T = {0} share their indexing (p0, q0, lags): one expansion
    base = _toeplitz_in_axis(full, shape, 0)
    if ndim > 1:
        base = base - _edge_term(a, b, shape, (0,))
    grid += _expand(base, shape, (0,))
    for count in range(1, ndim + 1):
        for subset in itertools.combinations(range(ndim), count):
            if subset == (0,) and ndim > 1:
                continue
            if count == ndim:  # every axis at an end: added in place
                _corner_term(a, b, shape, grid, 1 if count % 2 == 0 else -1)
            elif count % 2:
                grid -= _expand(_edge_term(a, b, shape, subset), shape, subset)
            else:
                grid += _expand(_edge_term(a, b, shape, subset), shape, subset)
    return out


def _grid(out, shape):
    """A 2-D view G[p, q] (any strides) as G[p_0, ..., p_D-1, q_0, ..., q_D-1]."""
    row, column = out.strides

    def strides(step):
        return tuple(step * int(np.prod(shape[i + 1:])) for i in range(len(shape)))

    return np.lib.stride_tricks.as_strided(out, shape=tuple(shape) * 2,
                                           strides=strides(row) + strides(column))


def _toeplitz_in_axis(full, shape, axis):
    """``F[q_t - p_t, d_rest]`` as an array indexed (p_t, q_t, d_rest...)."""
    k = shape[axis]
    index = (np.arange(k)[np.newaxis, :] - np.arange(k)[:, np.newaxis]) + (k - 1)  # (p, q)
    return np.moveaxis(full, axis, 0)[index]


def _expand(term, shape, subset):
    """A view of a term indexed (p_t, q_t for t in T..., d_r for r not in T...) as
    G[p..., q...], with ``d_r = q_r - p_r`` (strides only). The term is first laid out so
    that the innermost axis of G reads it contiguously."""
    ndim = len(shape)
    rest = [r for r in range(ndim) if r not in subset]
    # each of the term's axes, and the last axis of G it moves along
    last = [a for t in subset for a in (t, ndim + t)] + [ndim + r for r in rest]
    order = np.argsort(last, kind="stable")
    term = np.ascontiguousarray(np.transpose(term, order))
    strides = dict(zip(order, term.strides))
    out_strides = [0] * (2 * ndim)
    offset = [0] * term.ndim
    for i, t in enumerate(subset):
        out_strides[t], out_strides[ndim + t] = strides[2 * i], strides[2 * i + 1]
    for j, r in enumerate(rest):
        axis = 2 * len(subset) + j
        out_strides[r], out_strides[ndim + r] = -strides[axis], strides[axis]
        offset[int(np.flatnonzero(order == axis)[0])] = shape[r] - 1
    base = term[tuple(slice(o, None) for o in offset)]
    return np.lib.stride_tricks.as_strided(base, shape=tuple(shape) * 2,
                                           strides=out_strides, writeable=False)


def _end_slices(n, k, high):
    """The ``k - 1`` slices at an end of an axis of length n, in natural order."""
    return slice(n - k + 1, n) if high else slice(0, k - 1)


def _edge_term(a, b, shape, subset):
    """The pairs that start within ``K - 1`` of an end of every axis in `subset` (either
    end), before the tap at a low end and after ``p + V`` at a high end, indexed
    (p_t, q_t for t in T..., d_r for the other axes...)."""
    X = {ends: _end_products(a, b, shape, subset, ends)
         for ends in itertools.product((False, True), repeat=len(subset))}
    for i in reversed(range(len(subset))):  # later axes first; then merge their ends
        merged = {}
        for ends, values in X.items():
            values = _diagonal_sums(values, 2 * i, 2 * i + 1, shape[subset[i]], ends[i])
            key = ends[:i]
            merged[key] = values if key not in merged else merged[key] + values
        X = merged
    return X[()]


def _end_products(a, b, shape, subset, ends):
    """``X[r_t, s_t for t in T..., d_R...] = sum_b sum_{m_R} conj(a[r_T, m_R])
    b[s_T, m_R + d_R]`` over the ``K_t - 1`` end slices of each axis in T: one GEMM per lag
    of the other axes."""
    ndim = len(shape)
    rest = [r for r in range(ndim) if r not in subset]
    corner = tuple(shape[t] - 1 for t in subset)
    take = [slice(None)] * (ndim + 1)
    for t, high in zip(subset, ends):
        take[1 + t] = _end_slices(a.shape[1 + t], shape[t], high)
    order = [1 + t for t in subset] + [0] + [1 + r for r in rest]  # (corner, batch, rest)
    a_end = np.ascontiguousarray(np.transpose(np.conj(a[tuple(take)]), order))
    b_end = np.ascontiguousarray(np.transpose(b[tuple(take)], order))
    n_corner = int(np.prod(corner)) if corner else 1
    rest_sizes = [a.shape[1 + r] for r in rest]
    count = len(subset)
    X = np.zeros(tuple(n for size in corner for n in (size, size))
                 + tuple(2 * shape[r] - 1 for r in rest), dtype=np.result_type(a, b))
    if n_corner == 0:  # length 1 along T: no pair starts before the tap
        return X
    if len(rest) == 1 and a.shape[0] > 1:
        # several blocks (pairs) side by side along the other axis, with gaps of zeros wide
        # enough that no lag pairs samples of two blocks: each lag is then a 2-D view
        gap = shape[rest[0]] - 1
        a_end, b_end = (np.concatenate([e, np.zeros(e.shape[:-1] + (gap,), e.dtype)],
                                       axis=-1).reshape(e.shape[:-2] + (1, -1))
                        for e in (a_end, b_end))
        rest_sizes = [a_end.shape[-1]]
    pairs = [i for t in range(count) for i in (t, count + t)]  # (r.., s..) -> (r0, s0, ..)
    if len(rest) == 1 and a_end.shape[count] == 1:  # one axis of lags: cache-sized chunks
        k = shape[rest[0]]
        lags = _lagged_products(a_end.reshape(n_corner, -1), b_end.reshape(n_corner, -1), k)
        for i in range(2 * k - 1):
            X[..., i] = np.transpose(lags[i].reshape(corner + corner), pairs)
        return X
    lead = (slice(None),) * (count + 1)
    for lag in itertools.product(*[range(-(shape[r] - 1), shape[r]) for r in rest]):
        a_part = a_end[lead + tuple(slice(max(0, -g), n - max(0, g))
                                    for g, n in zip(lag, rest_sizes))]
        b_part = b_end[lead + tuple(slice(max(0, g), n - max(0, -g))
                                    for g, n in zip(lag, rest_sizes))]
        product = a_part.reshape(n_corner, -1) @ b_part.reshape(n_corner, -1).T
        where = tuple(g + shape[r] - 1 for g, r in zip(lag, rest))
        X[(Ellipsis,) + where] = np.transpose(product.reshape(corner + corner), pairs)
    return X


def _lagged_products(a, b, k):
    """``P[g + k - 1] = sum_n a[:, n] b[:, n + g]^T`` for the lags ``|g| < k``, (2k - 1, r, r):
    a GEMM per lag over chunks of the columns small enough to stay in cache for every lag
    (the rows are the few end slices, the columns long: each product reads far more than
    it computes)."""
    rows, n = a.shape
    out = np.zeros((2 * k - 1, rows, rows), dtype=np.result_type(a, b))
    chunk = max(512, (1 << 15) // max(1, rows))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        for i, g in enumerate(range(-(k - 1), k)):
            lo, hi = max(start, -g), min(stop, n - g)
            if hi > lo:
                out[i] += a[:, lo:hi] @ b[:, lo + g:hi + g].T
    return out


def _corner_term(a, b, shape, grid, sign):
    """Add ``sign`` times the pairs that start within ``K - 1`` of an end of every axis,
    over all 2^D corners, into `grid` (indexed p..., q...).

    Along the last axis the sum over the starts is a product of two Toeplitz matrices of the
    corner's rows (both ends in one GEMM); along the others, cumulative sums along the
    diagonals of each (p_i, q_i) plane, in place in that product.
    """
    ndim = len(shape)
    for ends in itertools.product((False, True), repeat=ndim - 1):
        C = _toeplitz_products(a, b, shape, ends)  # (corner..., p_last, corner..., q_last)
        if C is None:
            continue
        where = [slice(None)] * (2 * ndim)
        for i, high in enumerate(ends):
            _diagonal_cumsum(C, i, ndim + i, high)
            # low end: E[p, q] = C'[p - 1, q - 1]; high end: E[p, q] = C'[p, q]
            where[i] = where[ndim + i] = slice(0, -1) if high else slice(1, None)
        view = grid[tuple(where)]
        if sign > 0:
            view += C
        else:
            view -= C


def _toeplitz_products(a, b, shape, ends):
    """``C[r..., p, s..., q]``: over the end slices `ends` of every axis but the last, and
    both ends of the last, the sums ``sum_u conj(a[r, .]) b[s, .]`` over the starts before
    tap p (low end) or after it (high end) along the last axis."""
    ndim = len(shape)
    k = shape[-1]
    corner = tuple(n - 1 for n in shape[:-1])
    if k == 1 or 0 in corner:  # nothing starts before (or after) a tap
        return None
    take = [slice(None)] + [_end_slices(a.shape[1 + t], shape[t], high)
                            for t, high in enumerate(ends)]
    a_end, b_end = np.conj(a[tuple(take)]), b[tuple(take)]
    n = a.shape[ndim]
    u = np.arange(1, k)[:, np.newaxis]
    p = np.arange(k)[np.newaxis, :]
    factors = []
    for high in (False, True):
        # low end: start p - u (u >= 1, p >= u); high end: natural index p + u - 1 of the
        # last k - 1 samples (p + u <= k - 1)
        index, inside = ((p - u, p >= u) if not high else (p + u - 1, p + u <= k - 1))
        last = _end_slices(n, k, high)
        rows_a = a_end[..., last][..., np.clip(index, 0, k - 2)] * inside
        rows_b = b_end[..., last][..., np.clip(index, 0, k - 2)] * inside
        # (batch, corner..., u, p) -> (u, batch, corner..., p)
        factors.append((np.moveaxis(rows_a, -2, 0), np.moveaxis(rows_b, -2, 0)))
    columns = int(np.prod(corner)) * k
    A = np.concatenate([fa.reshape(-1, columns) for fa, _ in factors])
    B = np.concatenate([fb.reshape(-1, columns) for _, fb in factors])
    return (A.T @ B).reshape(corner + (k,) + corner + (k,))


def _diagonal_sums(C, axis_p, axis_q, k, high):
    """Sums along the diagonals of the (r, s) plane on two axes of length ``k - 1``:
    at a low end ``E[p, q] = sum_{u >= 1} C[p - u, q - u]``, at a high end
    ``E[p, q] = sum_{u >= 0} C[p + u, q + u]`` (both of length k, 0 past the corner)."""
    shape = list(C.shape)
    shape[axis_p] = shape[axis_q] = k
    E = np.zeros(shape, dtype=C.dtype)
    where = [slice(None)] * C.ndim
    where[axis_p] = where[axis_q] = slice(0, -1) if high else slice(1, None)
    E[tuple(where)] = C
    _diagonal_cumsum(E[tuple(where)], axis_p, axis_q, high)
    return E


def _diagonal_cumsum(C, axis_p, axis_q, high):
    """In place: the cumulative sum of C along the diagonals of its (axis_p, axis_q) planes,
    from the low corner (``C'[r, s] = sum_{t >= 0} C[r - t, s - t]``) or the high one."""
    n = C.shape[axis_p]

    def at(p, q):
        index = [slice(None)] * C.ndim
        index[axis_p], index[axis_q] = p, q
        return tuple(index)

    if high:
        for r in range(n - 2, -1, -1):
            C[at(r, slice(0, -1))] += C[at(r + 1, slice(1, None))]
    else:
        for r in range(1, n):
            C[at(r, slice(1, None))] += C[at(r - 1, slice(0, -1))]
