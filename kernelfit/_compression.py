"""Compression: what JPEG leaves in a fit's residual, and the kernel size it implies.

A filter's output saved as JPEG carries an error that is neither small nor white: each 8x8
block is quantised in the DCT domain on its own, so the residual of the fit jumps across
the block edges more than inside the blocks (`Moments.blocks`, gathered in the residual
pass), and it follows the content, so a larger kernel always "explains" a little of it with
faint rings of coefficients that hundreds of thousands of samples make significant.

A grid in the residual alone could be the input's: a non-linear filter (a median) of a JPEG
input treats its block edges unlike any kernel. So the output itself is checked too, on a
central crop of at most LATTICE_SIDE^2 samples read for it: the DCT coefficients of its
blocks, on the residual's grid, lie on the lattice of the quantisation steps where the
output was written as JPEG, and nowhere near one where it was filtered after. Both found,
``size='auto'`` keeps the smallest support whose fit is within the compression error of the
best one searched (its residual sum of squares at most COMPRESSION_RSS times the best: what
a larger support adds is then less than half the compression error's RMS), rather than
growing the kernel.
"""

import dataclasses

import numpy as np

from ._geometry import region
from ._solve import BLOCK

__all__ = ["jpeg_grid", "simplest_design"]

# JPEG's block grid: the periodicity of the mean square jumps of neighbouring residuals by
# phase (`Moments.blocks`) at least this along both axes (0.001-0.005 for the rounding noise
# of an 8-bit output; 0.05-0.36 for JPEG quality 98 to 50 of a blurred photograph).
JPEG_PERIODICITY = 0.05
# The output's crop for the lattice test, and how many of the 63 AC frequencies of its blocks
# must lie on a lattice of step >= 2 (JPEG quality 95 to 50 of a 192^2 crop: 16 to 63; a
# median or bilateral filter of a JPEG input: none).
LATTICE_SIDE = 256
LATTICE_FREQUENCIES = 8
# A frequency's coefficients lie on a lattice of step s when |mean exp(2 pi i c / s)| exceeds
# this (the rounding of 8-bit pixels leaves 0.6 for s = 2, more for larger steps; coefficients
# spread over several steps and off any lattice: about 1 / sqrt(blocks)); only steps below
# the coefficients' spread / 1.5 are tried (a narrower spread is on any lattice).
LATTICE_STRENGTH = 0.3

# A support within this factor of the best residual sum of squares searched fits the output
# as well as compression lets any do: the smallest such is kept.
COMPRESSION_RSS = 1.25


def jpeg_grid(problem, estimate):
    """The JPEG block grid in the residual of `estimate` (2-D images, with the residual
    pass's moments): {'block': 8, 'rows': a, 'columns': b, 'jumps': (row, column)}, the
    blocks starting at rows a and columns b modulo 8, 'jumps' the mean square residual
    jump across their edges over the median one, per axis, and 'lattice' how many of the
    output's 63 AC frequencies lie on the quantisation lattice; or None."""
    moments = estimate.moments
    if problem.n_spatial != 2 or moments is None or moments.n == 0:
        return None
    # a residual of the data's own precision has no compression in it to find (integer
    # outputs: twice their rounding's RMS; floating-point ones: 1e-6 of the output level)
    mean = abs(moments.sum_r / moments.n)
    rms_r = float(np.sqrt(max(moments.sum_r2 / moments.n - mean ** 2, 0.0)))
    rms_p = float(np.sqrt(moments.sum_p2 / moments.n))
    if rms_r <= 2 * problem.output_rounding or rms_r <= 1e-6 * rms_p:
        return None
    found = moments.blocks()
    if found is None or not all(periodic >= JPEG_PERIODICITY for _, periodic, _ in found):
        return None
    (row_edge, _, row_jump), (column_edge, _, column_jump) = found
    start = ((row_edge + 1) % BLOCK, (column_edge + 1) % BLOCK)
    lattice = max(_lattice(pair, start) for pair in problem.pairs[:4])
    if lattice < LATTICE_FREQUENCIES:
        return None
    return {"format": "JPEG", "block": BLOCK, "rows": start[0], "columns": start[1],
            "jumps": (round(row_jump, 3), round(column_jump, 3)), "lattice": lattice}


def _lattice(pair, start):
    """How many AC frequencies of the output's blocks (starting at `start` modulo 8; a
    central crop; the luma of colour) lie on a lattice of step >= 2."""
    import scipy.fft

    shape = pair.out_shape
    index = []
    for n, first in zip(shape, start):
        side = min(LATTICE_SIDE, (n - first) // BLOCK * BLOCK)
        if side < 4 * BLOCK:
            return 0
        begin = first + max(0, ((n - first) // 2 - side // 2) // BLOCK * BLOCK)
        index.append(slice(begin, begin + side))
    values = np.asarray(pair.output.read(tuple(index) + (slice(None),)), dtype=float)
    if values.shape[-1] == 3:  # JPEG quantises the luma (and the chroma) of colour
        values = values @ np.array([0.299, 0.587, 0.114])
    else:
        values = values[..., 0]
    rows, columns = values.shape
    blocks = values.reshape(rows // BLOCK, BLOCK, columns // BLOCK, BLOCK).transpose(
        0, 2, 1, 3) - 128
    coefficients = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(2, 3)).reshape(
        -1, BLOCK * BLOCK)[:, 1:]
    found = 0
    for c in coefficients.T:
        steps = np.arange(2, int(c.std() / 1.5) + 1)
        if steps.size and np.abs(np.mean(np.exp(2j * np.pi * c[:, np.newaxis] / steps),
                                         axis=0)).max() > LATTICE_STRENGTH:
            found += 1
    return found


def simplest_design(problem, first, choice):
    """The design of the smallest support searched whose fit is within COMPRESSION_RSS of
    the best (the same samples and edge rule), or None when that is the one chosen."""
    searched = [fit for (which, _, bias), fit in first.fits.items()
                if which == "total" and bias is None]
    if not searched:
        return None
    scale = float(np.sqrt(first.total.yy.sum() / max(int(first.total.n_rows.sum()), 1)))
    best = min(fit.total_rss(scale or 1.0) for fit in searched)
    within = [fit.support for fit in searched
              if fit.total_rss(scale or 1.0) <= COMPRESSION_RSS * best]
    support = min(within, key=lambda s: (s.size, s.shape, s.lo))
    design = choice.design
    if support == design.support or not design.support.contains(support):
        return None
    in_shapes = [pair.in_shape for pair in problem.pairs]
    return dataclasses.replace(design, support=support, boxes=tuple(
        region(shape, support, "same", design.pad_mode) for shape in in_shapes))


def clustered_errors(problem, design, first, estimate, compression):
    """The estimate with standard errors (and covariance) clustered by JPEG block: the
    sandwich ``G^-1 (sum_b s_b s_b^T) G^-1`` with ``s_b`` the sum over block b of each
    sample's window (and 1 for the bias) times its residual, so that the compression error
    may correlate within a block and follow the content (its systematic part, the same in
    every block, is a bias they do not hold). One more pass over the fitted samples (their
    tiles, when in memory). For a single system (one kernel for a grey image, no weights,
    not on Dask); None otherwise."""
    from ._solve import Factorization
    from ._statistics import design_tiles, embed, statistics_for

    if problem.layout != "shared" or problem.n_in != 1 or problem.weighted or \
            estimate.covariance is None or problem.dask:  # (no pass through the client)
        return None
    support = design.support
    m = support.size
    kernel = np.asarray(estimate.kernel)
    bias = 0.0 if estimate.bias is None else np.asarray(estimate.bias).reshape(-1)[0]
    start = (compression["rows"], compression["columns"])
    unknowns = m + (1 if problem.bias else 0)
    meat = np.zeros((unknowns, unknowns))
    for tile in design_tiles(problem, first, design):
        origins = tile.origins
        if origins is None:
            return None  # (a tile whose place in its image is not known)
        windows = np.moveaxis(tile.windows(problem), 3, -1)[..., 0]  # (B, H, W, *K)
        windows = windows[(slice(None),) * 3 + tuple(
            slice(a - b, a - b + k) for a, b, k in zip(support.lo, tile.support.lo,
                                                      support.shape))]
        predicted = tile.applied.forward(embed(kernel, support, tile.support))[..., 0] + bias
        residual = np.where(tile.usable[..., 0], tile.target[..., 0] - predicted, 0.0)
        for b, origin in enumerate(origins):
            rows = (origin[0] + np.arange(residual.shape[1]) - start[0]) // BLOCK
            columns = (origin[1] + np.arange(residual.shape[2]) - start[1]) // BLOCK
            rows, columns = rows - rows.min(), columns - columns.min()
            block = (rows[:, None] * (columns.max() + 1) + columns[None, :]).ravel()
            count = int(block.max()) + 1
            r = residual[b].ravel()
            scores = [np.bincount(block, windows[b].reshape(r.size, m)[:, j] * r,
                                  minlength=count) for j in range(m)]
            if problem.bias:
                scores.append(np.bincount(block, r, minlength=count))
            scores = np.stack(scores, axis=1)
            meat += scores.T @ scores
    stats = statistics_for(problem, first, design)
    gram = stats.gram[0][:unknowns, :unknowns]
    factor = Factorization(gram, unknowns, int(stats.n_rows[0]), bias=False)
    bread = factor.solve_centred(np.eye(unknowns))
    covariance = bread @ meat @ bread
    covariance = (covariance + covariance.T) / 2
    spread = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    stderr = spread[:m].reshape(kernel.shape)
    bias_stderr = None if not problem.bias else np.asarray(spread[m:]).reshape(
        np.shape(estimate.bias_stderr))
    for value in (stderr, bias_stderr):
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return dataclasses.replace(estimate, stderr=stderr, bias_stderr=bias_stderr,
                               covariance=covariance)
