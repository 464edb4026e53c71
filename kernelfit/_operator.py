"""The fit's linear operator: a kernel to the 'valid' samples of an extended input, and back.

One implementation of the forward pass (and its adjoint) serves `convolve`, `KernelFit.predict`,
the statistics, the residual pass, the dense patch rows and the TensorFlow model's layout.
Blocks carry a leading batch axis (pairs or tiles of the same shape) and trailing channels.
"""

import numpy as np
import scipy.fft

# Spatial samples per block above which forward and adjoint go through cached FFTs.
FFT_SAMPLES = 1 << 12

LAYOUTS = ("shared", "separate", "full")


def gather(source, maps, fillvalue, dtype, *, read=None, out=None):
    """The extended block ``source[maps]`` (spatial axes first, channels last), as `dtype`
    (written into `out` when given: a batch's slot).

    `maps` gives, per spatial axis, the source index of every sample of the block (-1: the
    fill value). The block is assembled from slices of the source, one per run of the maps
    that steps by +1 or -1 (a mirrored edge reads backwards), so a memmap or a lazily read
    array is read only where the block lies (a wrapped edge included), and nothing but the
    block is allocated. `read(index)` reads a block of `source` (default: slicing).
    """
    read = read or (lambda index: np.asarray(source[index]))
    trailing = tuple(source.shape[len(maps):])
    block = out if out is not None else np.empty(tuple(m.size for m in maps) + trailing,
                                                 dtype=dtype)
    for target, index, flip in block_reads(maps):
        if index is None:
            block[target] = fillvalue
            continue
        values = read(index + (slice(None),) * len(trailing))
        block[target] = np.flip(values, axis=flip) if flip else values
    return block


def block_reads(maps):
    """The slices `gather` reads for `maps`: (where in the block, the source's spatial
    slices or None for the fill value, the axes read backwards), one per run of the maps.
    Whoever fetches the data beforehand (the Dask pass) asks for exactly these."""
    for combination in _product([_runs(m) for m in maps]):
        target = tuple(slice(start, stop) for start, stop, _, _ in combination)
        if any(first < 0 for _, _, first, _ in combination):
            yield target, None, []
            continue
        index, flip = [], []
        for axis, (start, stop, first, step) in enumerate(combination):
            length = stop - start
            low = first if step > 0 else first - length + 1
            index.append(slice(low, low + length))
            if step < 0:
                flip.append(axis)
        yield target, tuple(index), flip


def _runs(m):
    """Runs of an index map that step by +1 or -1, or repeat the fill (-1):
    (start, stop, first source index, step)."""
    n = m.size
    if n and m[0] >= 0 and m[-1] - m[0] == n - 1 and (n < 2 or np.all(np.diff(m) == 1)):
        return [(0, n, int(m[0]), 1)]  # the common case: one contiguous run
    runs, start = [], 0
    while start < n:
        stop = start + 1
        if m[start] < 0:
            while stop < n and m[stop] < 0:
                stop += 1
            runs.append((start, stop, -1, 1))
        else:
            step = int(m[stop] - m[start]) if stop < n and m[stop] >= 0 else 1
            if step not in (1, -1):
                step = 1
            while stop < n and m[stop] >= 0 and m[stop] - m[stop - 1] == step:
                stop += 1
            runs.append((start, stop, int(m[start]), step))
        start = stop
    return runs


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head,) + tail


class Operator:
    """The fit's linear map from a kernel to the 'valid' samples of an extended block.

    Parameters
    ----------
    shape : tuple of int
        Spatial kernel shape (in correlation orientation: tap ``j`` meets input ``n + j``).
    layout : {'shared', 'separate', 'full'}
        'shared': one spatial kernel for every channel, ``shape``; 'separate': one per
        channel, ``(*shape, C)``; 'full': ``(*shape, C_in, C_out)``, mixing channels.
    n_in, n_out : int
        Input and output channels.
    """

    def __init__(self, shape, layout, n_in, n_out):
        self.shape, self.layout, self.n_in, self.n_out = tuple(shape), layout, n_in, n_out
        self.kernel_shape = {"shared": self.shape, "separate": self.shape + (n_out,),
                             "full": self.shape + (n_in, n_out)}[layout]

    def on(self, block):
        """The operator for one block: (B, *S_block, C_in) -> (B, *S_valid, C_out)."""
        return Applied(self, block)


class Applied:
    """The operator on one extended block, with the block's FFT computed once when it pays,
    and what is found from it (its autocorrelations, correlations) kept for later products.
    """

    def __init__(self, operator, block):
        self.operator = operator
        self.block = block
        ndim = len(operator.shape)
        self.spatial = tuple(range(1, ndim + 1))
        self.block_shape = block.shape[1:ndim + 1]
        self.valid_shape = tuple(s - k + 1 for s, k in zip(self.block_shape, operator.shape))
        self.real = not np.iscomplexobj(block)
        self.lengths = tuple(scipy.fft.next_fast_len(s + k - 1, real=self.real)
                             for s, k in zip(self.block_shape, operator.shape))
        self._cache = {}  # the block's spectra, autocorrelations and correlations
        # Worth transforming once for several products (the adjoint, the Gram matrix)
        self.use_fft = int(np.prod(self.block_shape)) * block.shape[0] >= FFT_SAMPLES

    # --- spectra ---------------------------------------------------------------------------

    def transform(self, array):
        """FFT of `array` (B, *S, ...) over the spatial axes at this block's lengths.

        The last axis first (the real transform, when real), then the others one at a time:
        a small array (a kernel) is transformed while it is still small along the axes not
        yet done, at a fraction of a full transform's cost.
        """
        array = np.asarray(array)
        axes, lengths = self.spatial, self.lengths
        if all(array.shape[a] == n for a, n in zip(axes, lengths)) or \
                array.shape[axes[-1]] > lengths[-1] // 2:
            forward = scipy.fft.rfftn if self.real else scipy.fft.fftn
            return forward(array, s=lengths, axes=axes, workers=-1)
        if self.real:
            out = scipy.fft.rfft(array, n=lengths[-1], axis=axes[-1], workers=-1)
        else:
            out = scipy.fft.fft(array, n=lengths[-1], axis=axes[-1], workers=-1)
        for axis, n in zip(axes[-2::-1], lengths[-2::-1]):
            out = scipy.fft.fft(out, n=n, axis=axis, workers=-1)
        return out

    def inverse(self, spectrum):
        inverse = scipy.fft.irfftn if self.real else scipy.fft.ifftn
        return inverse(spectrum, s=self.lengths, axes=self.spatial, workers=-1)

    @property
    def _spectra(self):
        return self._cache.get("spectra")

    @_spectra.setter
    def _spectra(self, value):
        self._cache["spectra"] = value

    @property
    def spectra(self):
        """FFT of every input channel of the block, (B, *L, C_in), computed once."""
        if self._spectra is None:
            self._spectra = self.transform(self.block)
        return self._spectra

    def autocorrelation(self, c, d):
        """``F[l] = sum_b sum_m conj(x_c[b, m]) x_d[b, m + l]`` for lags ``|l| < K`` (the
        operator's kernel shape), from the block's transform; found once per channel pair.
        ``F[-l] = conj(F[l])`` for one channel: only the lags ``l_0 >= 0`` are transformed
        back."""
        reach = self.operator.shape

        def spectrum():
            X = self.spectra
            if c == d:  # |X|^2: real
                product = np.einsum("b...,b...->...", X[..., c].real, X[..., c].real)
                product += np.einsum("b...,b...->...", X[..., c].imag, X[..., c].imag)
                return product
            if X.shape[0] == 1:
                return X[0, ..., d] * np.conj(X[0, ..., c])
            return np.einsum("b...,b...->...", np.conj(X[..., c]), X[..., d])

        key = ("autocorrelation", c, d)
        if key not in self._cache:
            lags = [np.arange(-(r - 1), r) for r in reach]
            if c == d:
                lags[0] = np.arange(reach[0])
            full = self.lags(key, spectrum, lags)
            if c == d:  # the negative l_0 by the symmetry
                mirrored = np.conj(np.flip(full[1:], axis=tuple(range(len(reach)))))
                full = np.concatenate([mirrored, full])
            self._cache[key] = {"lags": full}
        return self._cache[key]["lags"]

    def lags(self, key, spectrum, indices):
        """``ifft(S)[np.ix_(*indices)]`` (indices modulo the lengths; trailing axes kept) of
        the unbatched spectrum ``S = spectrum()``, made once per `key` for every operator on
        the block; its full inverse is kept once it has been computed (see `inverse_at`)."""
        entry = self._cache.setdefault(key, {})
        if "full" not in entry:
            if "spectrum" not in entry:
                entry["spectrum"] = spectrum()
            if self._pruning_pays(entry["spectrum"], indices):
                return self._pruned_inverse(entry["spectrum"], indices)
            entry["full"] = self._inverse_unbatched(entry.pop("spectrum"))
        return self._at(entry["full"], indices)

    def inverse_at(self, spectrum, indices):
        """``ifft(spectrum)[np.ix_(*indices)]`` over the spatial axes of an unbatched
        spectrum (*L, ...), indices modulo the lengths, trailing axes kept.

        A few lags of a long transform (a kernel's, of a large tile) are cheaper as a pruned
        inverse: the inverse DFT at the wanted indices only, a matrix product, along every
        axis but the last, then one short inverse FFT per remaining line.
        """
        if self._pruning_pays(spectrum, indices):
            return self._pruned_inverse(spectrum, indices)
        return self._at(self._inverse_unbatched(spectrum), indices)

    def _at(self, full, indices):
        """A full inverse transform at `indices` (modulo the lengths), trailing axes kept."""
        return full[np.ix_(*(np.asarray(i) % n for i, n in zip(indices, self.lengths)))]

    def _pruning_pays(self, spectrum, indices):
        """Whether the pruned inverse costs less than the full one (matrix products run
        several times faster per operation than an FFT; estimates, not measurements)."""
        ndim = len(self.lengths)
        if ndim == 1:
            return False
        total = int(np.prod(self.lengths))
        trailing = spectrum.size // max(1, int(np.prod(spectrum.shape[:ndim])))
        cost, rest = 0, spectrum.size
        for axis in range(ndim - 1):
            n, wanted = self.lengths[axis], len(indices[axis])
            rest //= n
            cost += wanted * n * rest
            rest *= wanted
        return 1.5 * cost < 2.5 * total * np.log2(total) * trailing

    def _pruned_inverse(self, spectrum, indices):
        ndim = len(self.lengths)
        out = spectrum
        for axis in range(ndim - 1):
            n = self.lengths[axis]
            wanted = np.asarray(indices[axis]) % n
            phase = (np.outer(wanted, np.arange(n)) % n) * (2 * np.pi / n)  # exact turns
            dft = (np.cos(phase) + 1j * np.sin(phase)) / n
            out = np.moveaxis(np.tensordot(dft, out, axes=(1, axis)), 0, axis)
        n = self.lengths[-1]
        if self.real:
            last = scipy.fft.irfft(out, n=n, axis=ndim - 1, workers=-1)
        else:
            last = scipy.fft.ifft(out, n=n, axis=ndim - 1, workers=-1)
        return np.take(last, np.asarray(indices[-1]) % n, axis=ndim - 1)

    def _real_parts(self, array, apply):
        """`apply` to a complex `array` against a real block: real and imaginary parts."""
        if self.real and np.iscomplexobj(array):
            return apply(array.real) + 1j * apply(array.imag)
        return apply(array)

    # --- the map and its adjoint -----------------------------------------------------------

    def forward(self, kernel):
        """The 'valid' samples ``y[n] = sum_j k[j] x[n + j]`` per layout, (B, *S_valid, C_out)."""
        kernel = np.asarray(kernel)
        if self._spectra is None:  # one product: scipy chooses the direct or FFT method
            return self._forward_direct(kernel)
        return self._real_parts(kernel, self._forward_fft)

    def _forward_fft(self, kernel):
        op = self.operator
        ndim = len(op.shape)
        # A correlation is a convolution with the kernel reversed: y[n] = (x * k_rev)[n + K - 1]
        reversed_kernel = np.flip(kernel, axis=tuple(range(ndim)))[np.newaxis]
        spectrum = self.transform(reversed_kernel)  # (1, *L, ...) over the kernel's channels
        X = self.spectra
        if op.layout == "shared":
            product = X * spectrum[..., np.newaxis]
        elif op.layout == "separate":
            product = X * spectrum
        elif op.n_in == 1 and op.n_out == 1:
            product = X * spectrum[..., 0]
        else:
            product = np.einsum("...c,...co->...o", X, spectrum)
        full = self.inverse(product)
        valid = (slice(None),) + tuple(slice(k - 1, k - 1 + v) for k, v in
                                       zip(op.shape, self.valid_shape))
        return full[valid]

    def _forward_direct(self, kernel):
        import scipy.signal

        op = self.operator
        ndim = len(op.shape)
        flipped = np.flip(kernel, axis=tuple(range(ndim)))  # scipy convolves
        block = self.block

        def valid(k):
            return scipy.signal.convolve(block, k, mode="valid")

        if op.layout == "shared":
            return valid(flipped[np.newaxis, ..., np.newaxis])
        if op.layout == "separate":
            return np.stack([scipy.signal.convolve(block[..., c], flipped[np.newaxis, ..., c],
                                                   mode="valid")
                             for c in range(block.shape[-1])], axis=-1)
        # Channels are summed, never flipped: reverse them so that scipy's flip undoes it.
        return np.concatenate([valid(flipped[np.newaxis, ..., ::-1, o])
                               for o in range(op.n_out)], axis=-1)

    def adjoint(self, residual):
        """``A^H r``: for each tap, ``sum_n conj(x[n + j]) r[n]`` per layout, kernel-shaped."""
        residual = np.asarray(residual)
        if not self.use_fft:
            return self._adjoint_direct(residual)
        return self._real_parts(residual, self._adjoint_fft)

    def _adjoint_fft(self, residual):
        op = self.operator
        R = self.transform(residual)  # (B, *L, C_out)
        X = np.conj(self.spectra)
        if op.layout == "shared":
            product = np.sum(X * R, axis=(0, -1))
        elif op.layout == "separate":
            product = np.sum(X * R, axis=0)
        else:
            product = np.einsum("b...c,b...o->...co", X, R)
        # lag -j of the cyclic correlation sum_m conj(x[m]) r[m + tau]
        return self.inverse_at(product, [-np.arange(k) for k in op.shape])

    def _inverse_unbatched(self, spectrum):
        axes = tuple(range(len(self.operator.shape)))
        inverse = scipy.fft.irfftn if self.real else scipy.fft.ifftn
        return inverse(spectrum, s=self.lengths, axes=axes, workers=-1)

    def _adjoint_direct(self, residual):
        op = self.operator
        windows = self.windows()  # (B, *V, C_in, *K)
        ndim = len(op.shape)
        batch_and_valid = "b" + "".join(chr(ord("i") + a) for a in range(ndim))
        taps = "".join(chr(ord("r") + a) for a in range(ndim))
        conj = np.conj(windows)
        if op.layout == "shared":
            return np.einsum(f"{batch_and_valid}c{taps},{batch_and_valid}c->{taps}", conj,
                             residual)
        if op.layout == "separate":
            return np.einsum(f"{batch_and_valid}c{taps},{batch_and_valid}c->{taps}c", conj,
                             residual)
        return np.einsum(f"{batch_and_valid}c{taps},{batch_and_valid}o->{taps}co", conj,
                         residual)

    def windows(self):
        """View of every 'valid' window: (B, *S_valid, C_in, *shape), nothing copied."""
        return np.lib.stride_tricks.sliding_window_view(self.block, self.operator.shape,
                                                        axis=self.spatial)
