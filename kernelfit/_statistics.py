"""Exact least squares for large images from sufficient statistics, at the cost of a few FFTs.

The normal equations need only the Gram matrix of the windows and their correlation with the
output. Over the exact set of windows the fit uses, the Gram matrix is a full-image
correlation (one FFT) less sums over border strips narrower than the kernel, which cost
O(kernel^3 x side) in 2-D. Masked samples are a low-rank correction; tiles and pairs add.
"""

import itertools

import numpy as np
import scipy.fft
import scipy.linalg

from ._solvers import EstimateBuilder, gram_diagnostics

# Output samples per tile (times channels): bounds the memory of the FFTs and strip sums.
# When all the data fit in one tile's budget, the tiles and their spectra are kept for the
# refinement pass instead of being read and transformed again.
TILE_ELEMENTS = 1 << 23


# --- statistics of one block ---------------------------------------------------------------

class Spectra:
    """FFTs of the channels of one extended block, shared by every statistic of that block."""

    def __init__(self, block, size):
        self.block = block  # (*S, C)
        self.size = tuple(size)
        self.shape = block.shape[:-1]
        self.real = not np.iscomplexobj(block)
        self.lengths = tuple(scipy.fft.next_fast_len(s + k - 1, real=self.real)
                             for s, k in zip(self.shape, self.size))
        axes = tuple(range(len(self.shape)))
        forward = scipy.fft.rfftn if self.real else scipy.fft.fftn
        self.axes = axes
        self.channels = [forward(block[..., c], s=self.lengths, axes=axes, workers=-1)
                         for c in range(block.shape[-1])]

    def _inverse(self, spectrum):
        inverse = scipy.fft.irfftn if self.real else scipy.fft.ifftn
        return inverse(spectrum, s=self.lengths, axes=self.axes, workers=-1)

    def _spectrum(self, array):
        forward = scipy.fft.rfftn if self.real and not np.iscomplexobj(array) else None
        if forward is None:
            if self.real:  # complex residuals against a real input: two real transforms
                return self._spectrum(array.real), self._spectrum(array.imag)
            forward = scipy.fft.fftn
        return forward(array, s=self.lengths, axes=self.axes, workers=-1)

    def gram(self, c, d):
        """``sum_n conj(x_c[n + p]) x_d[n + q]`` over the valid windows, (m, m) flat."""
        lag_index = np.ix_(*(np.arange(-(k - 1), k) % n
                             for k, n in zip(self.size, self.lengths)))
        full = self._inverse(np.conj(self.channels[c]) * self.channels[d])[lag_index]
        return _assemble(full, _strip_terms(self.block[..., c], self.block[..., d],
                                            self.size), self.size)

    def rhs(self, c, target):
        """``sum_n conj(x_c[n + p]) y[n]`` for every kernel offset p, flat (m,)."""
        spectrum = self._spectrum(target)
        if isinstance(spectrum, tuple):  # real input, complex target
            real, imag = (self._inverse(np.conj(self.channels[c]) * s) for s in spectrum)
            corr = real + 1j * imag
        else:
            corr = self._inverse(np.conj(self.channels[c]) * spectrum)
        index = np.ix_(*((-np.arange(k)) % n for k, n in zip(self.size, self.lengths)))
        return corr[index].ravel()

    def predict(self, c, kernel):
        """The 'valid' correlation of channel c with `kernel` (correlation orientation)."""
        spectrum = self._spectrum(np.flip(kernel))  # correlation = convolution, flipped
        if isinstance(spectrum, tuple):
            real, imag = (self._inverse(self.channels[c] * s) for s in spectrum)
            full = real + 1j * imag
        else:
            full = self._inverse(self.channels[c] * spectrum)
        valid = tuple(slice(k - 1, s) for k, s in zip(self.size, self.shape))
        return full[valid]

    def sums(self, c):
        """``sum_n x_c[n + p]`` over the valid windows: box sums by cumulative sums, flat."""
        out = self.block[..., c]
        for axis, (k, s) in enumerate(zip(self.size, self.shape)):
            cumulative = np.concatenate([np.zeros_like(np.take(out, [0], axis=axis)),
                                         np.cumsum(out, axis=axis)], axis=axis)
            p = np.arange(k)
            out = np.take(cumulative, p + s - k + 1, axis=axis) - np.take(cumulative, p,
                                                                          axis=axis)
        return out.ravel()


def _strip_terms(a, b, size):
    """The border-strip corrections of the Gram matrix, one array per non-empty axis set T.

    Along each axis the valid box of window starts is the whole range less a low strip
    (m < p) and a high strip (m > p + S - K). Expanding the product over axes of
    ``1 - low - high`` gives, for each axis set T, ``(-1)^|T|`` times the correlation of
    a and b summed over all other axes, weighted by the strip indicators on T.
    """
    shape = a.shape
    ndim = len(shape)
    strips = [np.unique(np.r_[0:k - 1, s - k + 1:s]) for s, k in zip(shape, size)]
    indicators = [((m[None, :] < np.arange(k)[:, None])
                   | (m[None, :] > np.arange(k)[:, None] + s - k)).astype(float)
                  for m, s, k in zip(strips, shape, size)]
    terms = []
    for count in range(1, ndim + 1):
        for subset in itertools.combinations(range(ndim), count):
            correlation = _strip_correlation(a, b, size, subset, strips)
            # contract each strip index m_i with its indicator g_i[p_i, m_i]
            letters = "abcdefghijklmnopqrstuvwxyz"
            m_letters = letters[:count]
            lag_letters = letters[count:count + ndim]
            p_letters = letters[count + ndim:2 * count + ndim]
            operands = [correlation] + [indicators[i] for i in subset]
            spec = (m_letters + lag_letters + ","
                    + ",".join(p + m for p, m in zip(p_letters, m_letters))
                    + "->" + p_letters + lag_letters)
            terms.append((subset, (-1) ** count * np.einsum(spec, *operands, optimize=True)))
    return terms


def _strip_correlation(a, b, size, subset, strips):
    """``F[m_T, d] = sum over the other axes of conj(a[m]) b[m + d]`` for m_T on the strips.

    Returns shape (n_i for i in T) + (2K_i - 1 for every axis i): strip positions on the
    axes in T, then every lag. The sums over the other axes are correlations by FFT.
    """
    shape = a.shape
    ndim = len(shape)
    rest = [i for i in range(ndim) if i not in subset]
    lags = [np.arange(-(k - 1), k) for k in size]
    # Dimensions of the gathered arrays: an axis in T becomes (strip, lag); others stay.
    dims = []
    for i in range(ndim):
        dims.extend([("m", i), ("d", i)] if i in subset else [("x", i)])
    a_index, b_index, valid = [], [], np.ones((1,) * len(dims), dtype=bool)
    for position, (kind, i) in enumerate(dims):
        shape_here = [1] * len(dims)
        if kind == "m":
            shape_here[position] = strips[i].size
            a_index.append(strips[i].reshape(shape_here))
            shifted = (strips[i][:, None] + lags[i][None, :])
            expanded = [1] * len(dims)
            expanded[position], expanded[position + 1] = shifted.shape
            inside = (shifted >= 0) & (shifted < shape[i])
            b_index.append(np.clip(shifted, 0, shape[i] - 1).reshape(expanded))
            valid = valid & inside.reshape(expanded)
        elif kind == "x":
            shape_here[position] = shape[i]
            a_index.append(np.arange(shape[i]).reshape(shape_here))
            b_index.append(np.arange(shape[i]).reshape(shape_here))
    a_part = a[tuple(a_index)]
    b_part = np.where(valid, b[tuple(b_index)], 0)
    rest_positions = [p for p, (kind, _) in enumerate(dims) if kind == "x"]
    if rest_positions:
        real = not (np.iscomplexobj(a) or np.iscomplexobj(b))
        lengths = [scipy.fft.next_fast_len(shape[i] + size[i] - 1, real=real) for i in rest]
        forward = scipy.fft.rfftn if real else scipy.fft.fftn
        inverse = scipy.fft.irfftn if real else scipy.fft.ifftn
        product = (np.conj(forward(a_part, s=lengths, axes=rest_positions, workers=-1))
                   * forward(b_part, s=lengths, axes=rest_positions, workers=-1))
        correlation = inverse(product, s=lengths, axes=rest_positions, workers=-1)
        for position, i, length in zip(rest_positions, rest, lengths):
            correlation = np.take(correlation, lags[i] % length, axis=position)
    else:
        correlation = np.conj(a_part) * b_part
    # Order: strip dims (T order), then lag dims in axis order.
    strip_positions = [p for p, (kind, _) in enumerate(dims) if kind == "m"]
    lag_positions = []
    for i in range(ndim):
        kind = "d" if i in subset else "x"
        lag_positions.append(dims.index((kind, i)))
    return np.transpose(correlation, strip_positions + lag_positions)


def _assemble(full, terms, size):
    """G[p, q] from the full correlation at lag q - p and the strip terms, flat (m, m)."""
    positions = np.indices(size).reshape(len(size), -1).T  # (m, ndim)
    lag = positions[None, :, :] - positions[:, None, :] + (np.array(size) - 1)
    lag_index = tuple(lag[..., i] for i in range(len(size)))
    gram = full[lag_index].astype(np.result_type(full, *(t for _, t in terms)), copy=True)
    for subset, values in terms:
        p_index = tuple(np.broadcast_to(positions[:, None, i], lag.shape[:2]) for i in subset)
        gram += values[p_index + lag_index]
    return gram


def _window_rows(block, size, rows):
    """The windows of `block` (channels last) at the output positions `rows`, (n, m, C)."""
    spatial = tuple(range(len(size)))
    windows = np.lib.stride_tricks.sliding_window_view(block, size, axis=spatial)
    selected = windows[rows]  # (n, C, *size); n may be 0
    return np.moveaxis(selected.reshape(selected.shape[0], block.shape[-1],
                                        int(np.prod(size))), 1, -1)


# --- the normal equations of each system -------------------------------------------------

class _Normal:
    """Accumulated ``[A 1]^H [A 1]``, ``[A 1]^H B``, and sums of B for one system."""

    def __init__(self, m, groups, rhs_count, dtype):
        size = m + groups
        self.m, self.groups = m, groups
        self.gram = np.zeros((size, size), dtype=dtype)
        self.rhs = np.zeros((size, rhs_count), dtype=dtype)
        self.yy = np.zeros(rhs_count)      # sum |y|^2 per column
        self.sy = np.zeros(rhs_count, dtype=dtype)  # sum y per column
        self.n_rows = 0

    def add_bias(self, group, window_sums, count, target_sums):
        column = self.m + group
        self.gram[:self.m, column] += np.conj(window_sums)
        self.gram[column, :self.m] += window_sums
        self.gram[column, column] += count
        self.rhs[column] += target_sums


def _accumulate(problem, normals, kind, keys, spectra, target, usable):
    """Add one tile's statistics to every system."""
    size = problem.size
    k = int(np.prod(size))
    block = spectra.block
    bias = problem.bias
    n_in = block.shape[-1]

    def windows_at(channels, rows):
        """Windows at the masked rows (to subtract) or the kept rows (to add directly)."""
        return _window_rows(block, size, rows)[..., channels]

    if kind in ("shared", "separate"):
        for c in range(n_in):
            normal = normals[0] if kind == "shared" else normals[c]
            kept = usable[..., c]
            masked = ~kept
            y = target[..., c]
            if masked.sum() * 2 <= kept.size:  # full statistics less the masked rows
                gram = spectra.gram(c, c)
                rhs = spectra.rhs(c, np.where(kept, y, 0))
                sums = spectra.sums(c)
                if masked.any():  # (their targets were zeroed: nothing to remove from rhs)
                    windows = windows_at([c], masked)[..., 0]
                    gram -= windows.conj().T @ windows
                    sums = sums - windows.sum(axis=0)
            else:  # mostly masked: the kept windows directly
                windows = windows_at([c], kept)[..., 0]
                gram = windows.conj().T @ windows
                rhs = windows.conj().T @ y[kept]
                sums = windows.sum(axis=0)
            normal.gram[:k, :k] += gram
            normal.rhs[:k, 0] += rhs
            normal.yy += float(np.sum(np.abs(y[kept]) ** 2))
            normal.sy += y[kept].sum()
            normal.n_rows += int(kept.sum())
            if bias:
                group = c if kind == "shared" else 0
                normal.add_bias(group, sums, int(kept.sum()), y[kept].sum())
        return
    m = k * n_in
    for key, normal in zip(keys, normals):
        columns = list(range(target.shape[-1])) if key == "joint" else [key]
        kept = usable[..., 0] if key == "joint" else usable[..., key]
        masked = ~kept
        if masked.sum() * 2 <= kept.size:
            gram = np.zeros((m, m), dtype=normal.gram.dtype)
            for c, d in itertools.product(range(n_in), repeat=2):
                if d >= c:
                    block_cd = spectra.gram(c, d)
                    gram[c::n_in, d::n_in] = block_cd
                    gram[d::n_in, c::n_in] = block_cd.conj().T
            sums = np.stack([spectra.sums(c) for c in range(n_in)], axis=-1).ravel()
            rhs = np.zeros((m, len(columns)), dtype=normal.rhs.dtype)
            for j, column in enumerate(columns):
                y = np.where(kept, target[..., column], 0)
                for c in range(n_in):
                    rhs[c::n_in, j] = spectra.rhs(c, y)
            if masked.any():
                windows = windows_at(slice(None), masked).reshape(int(masked.sum()), m)
                gram -= windows.conj().T @ windows
                sums = sums - windows.sum(axis=0)
        else:
            windows = windows_at(slice(None), kept).reshape(int(kept.sum()), m)
            gram = windows.conj().T @ windows
            sums = windows.sum(axis=0)
            rhs = windows.conj().T @ target[kept][:, columns]
        normal.gram[:m, :m] += gram
        normal.rhs[:m] += rhs
        values = target[kept][:, columns]
        normal.yy += np.sum(np.abs(values) ** 2, axis=0)
        normal.sy += values.sum(axis=0)
        normal.n_rows += int(kept.sum())
        if bias:
            normal.add_bias(0, sums, int(kept.sum()), values.sum(axis=0))


def _tiles(problem):
    """Every pair's output in blocks of rows: (spectra of the input, targets, usable)."""
    for pair in problem.pairs:
        row_elements = max(1, int(np.prod(pair.output.shape[1:])) * max(1, pair.source.shape[-1]))
        step = max(1, TILE_ELEMENTS // row_elements)
        for start in range(0, pair.n_rows, step):
            tile = pair.tile(start, min(start + step, pair.n_rows))
            yield Spectra(tile.extended, problem.size), tile.target, tile.usable


def _solve(normal, rhs):
    """Solve the centred normal equations; return (kernel part, bias part)."""
    m = normal.m
    gram = normal.gram
    kk, kb, bb = gram[:m, :m], gram[:m, m:], gram[m:, m:]
    counts = np.real(np.diag(bb))
    inverse_counts = np.where(counts > 0, 1.0 / np.where(counts > 0, counts, 1.0), 0.0)
    centred = kk - (kb * inverse_counts) @ kb.conj().T
    rhs_k = rhs[:m] - (kb * inverse_counts) @ rhs[m:]
    centred = (centred + centred.conj().T) / 2
    try:
        factor = scipy.linalg.cho_factor(centred)
        condition = np.linalg.cond(centred) if m <= 4096 else 0.0
        if not np.isfinite(condition) or condition * np.finfo(float).eps > 1e-3:
            raise np.linalg.LinAlgError("ill-conditioned")
        x = scipy.linalg.cho_solve(factor, rhs_k)
    except np.linalg.LinAlgError:
        eigenvalues, vectors = np.linalg.eigh(centred)
        tol = 100 * m * np.finfo(float).eps * max(eigenvalues.max(), 0.0)
        keep = eigenvalues > tol
        x = vectors[:, keep] @ ((vectors[:, keep].conj().T @ rhs_k) / eigenvalues[keep, None])
    bias = inverse_counts[:, None] * (rhs[m:] - kb.conj().T @ x)
    return x, bias


def solve_statistics(problem):
    """Least squares from the exact normal equations, refined once against exact residuals."""
    kind, keys = problem.layout, problem.system_keys()
    k = int(np.prod(problem.size))
    m = k * (problem.n_in if kind == "full" else 1)
    groups = (problem.n_in if kind == "shared" else 1) if problem.bias else 0
    columns = problem.n_out if keys == ["joint"] else 1
    dtype = problem.dtype
    normals = [_Normal(m, groups, columns, dtype) for _ in keys]
    small = sum(p.source.size for p in problem.pairs) <= TILE_ELEMENTS
    cached = []
    for tile in _tiles(problem):
        _accumulate(problem, normals, kind, keys, *tile)
        if small:
            cached.append(tile)
    solutions = [_solve(normal, normal.rhs) for normal in normals]
    # One step of iterative refinement with exact residuals (by FFT): normal-equation
    # accuracy, cond(A)^2 eps, becomes least-squares accuracy, cond(A) eps.
    residual = _residual_statistics(problem, kind, keys, normals, solutions,
                                    cached if small else _tiles(problem))
    refined = []
    for normal, (x, b), (g, rr) in zip(normals, solutions, residual):
        dx, db = _solve(normal, g)
        delta = np.concatenate([dx, db]) if normal.groups else dx
        ss_res = rr - 2 * np.real(np.sum(np.conj(delta) * g, axis=0)) + np.real(
            np.sum(np.conj(delta) * (normal.gram @ delta), axis=0))
        refined.append((x + dx, b + db if normal.groups else b, np.maximum(ss_res, 0.0)))
    return _estimate(problem, keys, normals, refined)


def _residual_statistics(problem, kind, keys, normals, solutions, tiles):
    """Per system: ``[A 1]^H r`` and ``|r|^2`` for the residuals r of the current solution."""
    size = problem.size
    out = [(np.zeros_like(n.rhs), np.zeros(n.rhs.shape[1])) for n in normals]
    for spectra, target, usable in tiles:
        n_in = spectra.block.shape[-1]
        for index, (key, normal, (x, b)) in enumerate(zip(keys, normals, solutions)):
            g, rr = out[index]
            if kind in ("shared", "separate"):
                channels = range(n_in) if kind == "shared" else [key]
                for c in channels:
                    kept = usable[..., c]
                    offset = b[c if kind == "shared" else 0, 0] if normal.groups else 0
                    r = np.where(kept, target[..., c] - spectra.predict(
                        c, x[:, 0].reshape(size)) - offset, 0)
                    g[:normal.m, 0] += spectra.rhs(c, r)
                    rr[0] += float(np.sum(np.abs(r) ** 2))
                    if normal.groups:
                        g[normal.m + (c if kind == "shared" else 0), 0] += r.sum()
            else:
                columns = list(range(target.shape[-1])) if key == "joint" else [key]
                kept = usable[..., 0] if key == "joint" else usable[..., key]
                for j, column in enumerate(columns):
                    kernel = x[:, j].reshape(size + (n_in,))
                    predicted = sum(spectra.predict(c, kernel[..., c]) for c in range(n_in))
                    offset = b[0, j] if normal.groups else 0
                    r = np.where(kept, target[..., column] - predicted - offset, 0)
                    for c in range(n_in):
                        g[c:normal.m:n_in, j] += spectra.rhs(c, r)
                    rr[j] += float(np.sum(np.abs(r) ** 2))
                    if normal.groups:
                        g[normal.m, j] += r.sum()
            out[index] = (g, rr)
    return out


def _estimate(problem, keys, normals, refined):
    builder = EstimateBuilder(problem)
    for key, normal, (x, b, ss_res) in zip(keys, normals, refined):
        coef, bias_index = problem.system_indices(key)
        # The total sum of squares about each column's mean, from the statistics.
        ss_tot = normal.yy - np.abs(normal.sy) ** 2 / normal.n_rows
        for j in range(x.shape[1]):
            rank, bias_rank, singular, coef_se, bias_se = gram_diagnostics(
                normal.gram, normal.m, normal.n_rows, float(ss_res[j]))
            builder.add(coef[:, j], x[:, j], coef_se, bias_index[:, j],
                        b[:, j] if problem.bias else None, bias_se,
                        ss_res=float(ss_res[j]), ss_tot=float(ss_tot[j]),
                        n_equations=normal.n_rows, n_unknowns=normal.m + normal.groups,
                        rank=rank + bias_rank, singular=singular, full_rank=rank == normal.m)
    return builder.estimate()
