"""Dask: the passes over the pixels of dask arrays, a task per batch of tiles on Dask's
workers, their small results merged by a fixed tree on the workers too.

The tasks are the batches of the in-memory pass (`batch_plan`: the same tiles, bands and
stacking of small pairs; an output stored in chunks wider than a tile's share of an axis cuts
the tiles where they begin, `_statistics.tiles`). Each takes, from the dask arrays, exactly
what `Pair.block` reads for its tiles (the halo, and the far side of a wrapped or mirrored
edge): the chunks it meets, or of a chunk only the part it needs, cut by a task of its own
where the chunk is, so that only that part travels between workers. It builds its blocks
with `Pair.block` itself, so its statistics are those of the in-memory path (input, output
and mask need not share chunks: nothing is rechunked). ``map_overlap`` would instead cut
tiles at every chunk, and could not read a wrapped edge. The results (statistics, never
pixels) are summed in groups of FAN_IN in the order of the tiles, so the sums, to the last
bit, do not depend on the scheduler, the number of workers, the input's chunks or which
task finishes first. dask is imported only when a dask array is fitted.
"""

import copy
import dataclasses
import functools
import itertools
import sys
import uuid

import numpy as np

from ._geometry import block_maps
from ._operator import Operator, block_reads
from ._statistics import (Tile, batch_plan, batch_statistics, empty, evidence_pieces,
                          evidence_statistics, read_batch)

# Results summed by each node of the reduction tree: fixed, so that the order of every sum
# is fixed too.
FAN_IN = 8


def is_dask(value):
    """Whether `value` is a dask array (without importing dask: if dask.array was never
    imported, nothing can be one)."""
    array = sys.modules.get("dask.array")
    return array is not None and isinstance(value, array.Array)


# --- the passes -------------------------------------------------------------------------------

def accumulate(problem, support, boxes, pad_mode, evidence=None):
    """The first pass (`_statistics.accumulate`) on Dask: (band 0, total, None, evidence).

    No tiles are kept: they stay on the workers, and the residual pass reads them again.
    """
    tasks = _Tasks(problem, support, pad_mode, "statistics")
    for band, pieces in batch_plan(problem, support, boxes):
        tasks.add(_statistics_task, band, pieces, None)
    top, bottom = tasks.compute() or (None, None)
    top = top if top is not None else empty(problem, support)
    total = bottom.add(top) if bottom is not None else top.copy()
    extra = None
    if evidence is not None:  # a small central part: one task, read on a worker
        tasks = _Tasks(problem, evidence, pad_mode, "evidence")
        pieces = evidence_pieces(problem, support, evidence, boxes)
        if pieces:
            tasks.add(_evidence_task, 0, pieces, None)
        extra = tasks.compute()
        extra = extra[0] if extra is not None else empty(problem, evidence)
    return top, total, None, extra


def residual_pass(problem, design, kernel, bias, ss_res, gradient, moments):
    """The residual pass (`_normal.residual_pass`) on Dask, over the design's tiles, read
    again on the workers: `ss_res`, `gradient` (or None) and `moments` (or None) are the
    empty sums, returned filled."""
    tasks = _Tasks(problem, design.support, design.pad_mode, "residual")
    for band, pieces in batch_plan(problem, design.support, design.boxes):
        tasks.add(_residual_task, band, pieces, (design, kernel, bias, ss_res, gradient,
                                                 moments))
    merged = tasks.compute()
    if merged is None:
        return ss_res, gradient, moments
    return tuple(empty_sum if total is None else total
                 for empty_sum, total in zip((ss_res, gradient, moments), merged))


# --- on the workers -------------------------------------------------------------------------

def _statistics_task(job, *chunks):
    """One batch's statistics: (band 0 or None, band 1 or None)."""
    block = job.read(chunks)
    into = empty(job.problem, job.support)
    batch_statistics(job.problem, job.support, block, into)
    return (into, None) if job.band == 0 else (None, into)


def _evidence_task(job, *chunks):
    """The evidence's statistics on its pieces (the job's support is the evidence's)."""
    return (evidence_statistics(job.problem, job.support, job.pairs(chunks), job.pad_mode),)


def _residual_task(job, *chunks):
    """One batch's residual sums: (ss_res, gradient or None, moments or None)."""
    from ._normal import tile_residual

    design, kernel, bias, *sums = job.context
    ss_res, gradient, moments = copy.deepcopy(sums)  # (the empty sums: filled here)
    block = job.read(chunks)
    operator = Operator(job.support.shape, job.problem.layout, job.problem.n_in,
                        job.problem.n_out)
    tile = Tile(job.band, job.support, operator.on(block.extended), block.target,
                block.usable, tuple((None, box) for _, box, _, _ in job.pieces),
                weight=block.weight)
    tile_residual(job.problem, design, tile, kernel, bias, ss_res, gradient, moments)
    return ss_res, gradient, moments


def _merge(*parts):
    """The sums, item by item and in the order given, of task results (tuples of
    Statistics, arrays, Moments or None)."""
    return tuple(_sum([part[i] for part in parts]) for i in range(len(parts[0])))


def _sum(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    total = copy.deepcopy(values[0])  # (a result may be read again if a task is retried)
    for value in values[1:]:
        if isinstance(total, np.ndarray):
            total += value
        elif hasattr(total, "merge"):
            total.merge(value)  # Moments
        else:
            total.add(value)  # Statistics
    return total


class _Fetched:
    """An array as one task sees it: the slices of it that the task fetched, by index."""

    def __init__(self, values):
        self.values = values

    def __getitem__(self, index):
        return self.values[_key(index)]


def _key(index):
    return tuple((part.start, part.stop) for part in index)


class _Job:
    """What one task is sent: the problem without its arrays, the taps and edge rule, the
    band, what else its pass needs (`context`), and per tile its pair (arrays replaced by
    what the task fetches), its samples, what it reads of each array and the dask chunks (to
    say where a bad value is). A read is an ndarray (read on the client: an array that is
    not a dask array) or (shape, dtype, pieces of the chunks the task is given)."""

    def __init__(self, problem, support, pad_mode, band, context, pieces):
        self.problem, self.support, self.pad_mode, self.band = problem, support, pad_mode, band
        self.context = context
        self.pieces = pieces  # ((pair, box, {role: ((key, read), ...)}, {role: chunks}), ...)

    def pairs(self, chunks):
        """The (pair, box) pieces, each array standing for what was read of it."""
        out = []
        for pair, box, reads, _ in self.pieces:
            sources = {}
            for role, wanted in reads.items():
                source = copy.copy(getattr(pair, role))
                source.array = _Fetched({key: _assemble(read, chunks) for key, read in wanted})
                sources[role] = source
            out.append((dataclasses.replace(pair, **sources), box))
        return out

    def read(self, chunks):
        """The batch's Block, as `read_batch` builds it in memory; a bad value is an error
        saying where it is."""
        pieces = self.pairs(chunks)
        try:
            return read_batch(self.problem, self.support, pieces, self.pad_mode)
        except ValueError as error:
            for (pair, box), (_, _, _, where) in zip(pieces, self.pieces):
                try:
                    pair.block(self.support, box, self.pad_mode, self.problem.fillvalue,
                               self.problem.dtype)
                except ValueError:
                    raise ValueError(f"{error}{_where(self, pair, box, where, error)}") \
                        from None
            raise


def _cut(chunk, inside):
    """A part of a chunk, as a copy: the chunk may go once its parts are cut."""
    return np.array(chunk[inside])


def _assemble(read, chunks):
    """A slice of an array from the pieces of its chunks (or as read on the client)."""
    if isinstance(read, np.ndarray):
        return read
    shape, dtype, parts = read
    if len(parts) == 1:  # inside one chunk: a view
        argument, inside, _ = parts[0]
        return chunks[argument][inside]
    out = np.empty(shape, dtype)
    for argument, inside, where in parts:
        out[where] = chunks[argument][inside]
    return out


def _where(job, pair, box, chunks, error):
    """Where the first NaN or infinity the error is about lies: its index in the array,
    its dask chunk, and the tile's output samples."""
    tile = ", ".join(f"{a}:{b}" for a, b in zip(box.start, box.stop))
    role = next((r for r in ("input", "weights") if str(error).startswith(r)), "output")
    source = getattr(pair, role)
    if role == "input":
        maps = block_maps(pair.in_shape, job.support, box, job.pad_mode)
        indices = [index + (slice(None),) for _, index, _ in block_reads(maps)
                   if index is not None]
    else:
        indices = [box.slices() + (slice(None),)]
    for index in indices:
        values = source.read(index)
        bad = ~np.isfinite(values) | ((values < 0) if role == "weights" else False)
        if role == "output" and pair.mask is not None:
            bad &= np.broadcast_to(pair.mask.read(index), bad.shape)
        if not bad.any():
            continue
        local = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
        position = [0] * len(source.axes)
        for place, axis in enumerate(source.axes):
            start = index[place].start or 0
            position[axis] = start + int(local[place])
        where = f": the first at index {tuple(position)}"
        if chunks[role] is not None:
            chunk = tuple(int(np.searchsorted(np.cumsum(sizes), p, side="right"))
                          for sizes, p in zip(chunks[role], position))
            where += f", in dask chunk {chunk}"
        return f"{where} (the tile of output samples [{tile}])"
    return f" (in the tile of output samples [{tile}])"


# --- on the client ----------------------------------------------------------------------------

class _Tasks:
    """The tasks of one pass, one per batch of tiles, and the tree that merges them, in a
    graph whose tasks take the dask arrays' chunks themselves (no dask array is made per
    slice: with thousands of small pairs that would cost more than the fit)."""

    def __init__(self, problem, support, pad_mode, stage):
        self.problem, self.support, self.pad_mode, self.stage = problem, support, pad_mode, stage
        # the problem as the workers see it: no arrays, no callbacks
        self.shipped = dataclasses.replace(problem, pairs=(), progress=None, options={})
        self.templates, self.bounds, self.arrays = {}, {}, {}
        self.name = f"kernelfit-{stage}-{uuid.uuid4().hex}"
        self.layer, self.tiles, self.parts = {}, {}, {}

    def add(self, function, band, pieces, context):
        arguments = {}  # chunk key -> its place among the task's arguments
        shipped = []
        for pair, box in pieces:
            template, chunks = self._template(pair)
            reads = {}
            for role, indices in self._reads(pair, box).items():
                source = getattr(pair, role)
                wanted = {}
                for index in indices:
                    original = source.original(index)
                    key = _key(original)
                    if key not in wanted:
                        wanted[key] = (self._chunks(source.array, original, arguments)
                                       if is_dask(source.array) else
                                       np.asarray(source.array[original]))
                reads[role] = tuple(wanted.items())
            shipped.append((template, box, reads, chunks))
        job = _Job(self.shipped, self.support, self.pad_mode, band, context, tuple(shipped))
        name = f"{self.name}-{len(self.tiles)}"
        self.tiles[name] = len(pieces)
        self.layer[name] = (function, job) + tuple(arguments)

    def _template(self, pair):
        """The pair without its arrays, and the chunks of its dask arrays (else None)."""
        if id(pair) not in self.templates:
            sources, chunks = {}, {}
            for role in ("input", "output", "mask", "weights"):
                source = getattr(pair, role)
                if source is not None and hasattr(source, "array"):  # (not a weight rule)
                    chunks[role] = source.array.chunks if is_dask(source.array) else None
                    sources[role] = copy.copy(source)
                    sources[role].array = None
            self.templates[id(pair)] = (dataclasses.replace(pair, **sources), chunks)
        return self.templates[id(pair)]

    def _reads(self, pair, box):
        """What `Pair.block` reads of each array for the samples `box` (channels last)."""
        maps = block_maps(pair.in_shape, self.support, box, self.pad_mode)
        samples = box.slices() + (slice(None),)
        reads = {"input": [index + (slice(None),) for _, index, _ in block_reads(maps)
                           if index is not None],
                 "output": [samples]}
        if pair.mask is not None:
            reads["mask"] = [samples]
        if pair.weights is not None and hasattr(pair.weights, "array"):
            reads["weights"] = [samples]
        return reads

    def _chunks(self, array, original, arguments):
        """The read `original` (slices) of a dask array as (shape, dtype, pieces): for each
        chunk it meets, (its place among the arguments, the part of it, where that goes)."""
        if array.name not in self.bounds:
            self.arrays[array.name] = array
            self.bounds[array.name] = [np.cumsum((0,) + sizes) for sizes in array.chunks]
        ranges = []
        for part, bounds, n in zip(original, self.bounds[array.name], array.shape):
            start, stop, _ = part.indices(n)
            first = int(np.searchsorted(bounds, start, side="right")) - 1
            last = int(np.searchsorted(bounds, stop - 1, side="right")) - 1
            ranges.append([(c, max(start, bounds[c]) - bounds[c],
                            min(stop, bounds[c + 1]) - bounds[c],
                            max(start, bounds[c]) - start) for c in range(first, last + 1)])
        parts = []
        for combination in itertools.product(*ranges):
            key = (array.name,) + tuple(c for c, _, _, _ in combination)
            inside = tuple(slice(a, b) for _, a, b, _ in combination)
            if any(b - a < size[c] for (c, a, b, _), size in zip(combination, array.chunks)):
                # a part of a chunk (a halo, a tile's rows): cut where the chunk is, so that
                # only the part travels to the tile's worker
                key = self._part(key, inside)
                inside = tuple(slice(0, b - a) for _, a, b, _ in combination)
            argument = arguments.setdefault(key, len(arguments))
            parts.append((argument, inside,
                          tuple(slice(o, o + b - a) for _, a, b, o in combination)))
        shape = tuple(len(range(*part.indices(n))) for part, n in zip(original, array.shape))
        return shape, array.dtype, tuple(parts)

    def _part(self, key, inside):
        """The key of a task that cuts `inside` (slices) out of the chunk `key`."""
        bounds = tuple((part.start, part.stop) for part in inside)
        if (key, bounds) not in self.parts:
            name = (f"{self.name}-part", len(self.parts))
            self.layer[name] = (functools.partial(_cut, inside=inside), key)
            self.parts[key, bounds] = name
        return self.parts[key, bounds]

    def compute(self):
        """The merged results (None without tasks), computed by Dask's current scheduler."""
        if not self.tiles:
            return None
        import dask
        from dask.delayed import Delayed

        keys, level = list(self.tiles), 0
        while len(keys) > 1:  # a fixed tree: the order of the sums is the tiles'
            level += 1
            merged = []
            for i in range(0, len(keys), FAN_IN):
                name = f"{self.name}-merge-{level}-{i // FAN_IN}"
                self.layer[name] = (_merge,) + tuple(keys[i:i + FAN_IN])
                merged.append(name)
            keys = merged
        # one flat graph: a high-level graph of a layer per array culls each layer against
        # every key, which with thousands of pairs costs more than the fit
        graph = dict(self.layer)
        layers = {}  # each layer once: the slices of one array (frames, pairs) share its own
        for array in self.arrays.values():
            layers.update(array.__dask_graph__().layers)
        for layer in layers.values():
            graph.update(layer)
        root = Delayed(keys[0], graph)
        # (the evidence's one small task has no bar of its own)
        progress = self.problem.progress if self.stage != "evidence" else None
        scheduler = dask.base.get_scheduler(collections=[root])
        client = _client(scheduler)
        total = sum(self.tiles.values())
        if client is not None:
            if not progress:
                return dask.compute(root)[0]
            future = client.compute(root)
            if progress.drawn:  # a text bar here; the dashboard shows the tasks too
                from distributed import progress as show

                show(future)
                return future.result()
            done = progress.start(self.stage, total)
            result = future.result()
            done(total)
            return result
        if not progress:
            return dask.compute(root)[0]
        if progress.drawn:
            from dask.diagnostics import ProgressBar

            callbacks = [ProgressBar(out=sys.stderr)._callback]
        else:
            done = progress.start(self.stage, total)
            tiles = self.tiles

            def finished(key, result, graph, state, worker):
                if key in tiles:
                    done(tiles[key])

            callbacks = [(None, None, None, finished, None)]
        # (given to this compute alone: fits in other threads report their own)
        return dask.compute(root, scheduler=scheduler, callbacks=callbacks)[0]


def _client(scheduler):
    """The dask.distributed Client whose scheduler this is, or None (a local scheduler)."""
    distributed = sys.modules.get("distributed")
    client = getattr(scheduler, "__self__", None)
    return client if distributed is not None and isinstance(client, distributed.Client) \
        else None
