"""A slow, independent oracle for the forward model: explicit index maps, no numpy.pad rules, no scipy."""

import itertools

import numpy as np


def extend_index(t, n, boundary):
    """Where sample index `t` of an axis of length `n` reads from; -1 means the fill value."""
    if 0 <= t < n:
        return t
    if boundary in ("fill", "constant"):
        return -1
    if boundary == "edge":
        return min(max(t, 0), n - 1)
    if boundary == "wrap":
        return t % n
    if boundary in ("symmetric", "symm"):
        t %= 2 * n
        return t if t < n else 2 * n - 1 - t
    if boundary == "reflect":
        if n == 1:
            return 0
        t %= 2 * n - 2
        return t if t < n else 2 * n - 2 - t
    raise AssertionError(boundary)


def reference_filter(x, kernel, mode="same", boundary="fill", fillvalue=0,
                     convention="convolution", origin=0):
    """Correlation by definition, sample by sample (convolution flips the kernel first).

    Correlation in 'full' mode is ``y[j] = sum_p x[j - (K - 1) + p] k[p]``; 'same' starts at
    ``j = K - 1 - K // 2 - origin`` and 'valid' at ``j = K - 1``.
    """
    x = np.asarray(x)
    kernel = np.asarray(kernel)
    origin = (origin,) * x.ndim if np.isscalar(origin) else tuple(origin)
    if convention == "convolution":
        kernel = np.flip(kernel)
        origin = tuple(-o for o in origin)
    starts, lengths = [], []
    for n, k, o in zip(x.shape, kernel.shape, origin):
        if mode == "full":
            starts.append(0)
            lengths.append(n + k - 1)
        elif mode == "same":
            starts.append(k - 1 - k // 2 - o)
            lengths.append(n)
        else:
            starts.append(k - 1)
            lengths.append(n - k + 1)
    # Append the fill value as the last sample of every axis: index -1 on any axis reads it.
    extended = np.pad(x.astype(np.result_type(x, kernel, fillvalue)), [(0, 1)] * x.ndim,
                      constant_values=fillvalue)
    out = np.zeros(lengths, dtype=np.result_type(x, kernel, fillvalue, float))
    for p in itertools.product(*(range(k) for k in kernel.shape)):
        index_lists = []
        for axis, (n, k) in enumerate(zip(x.shape, kernel.shape)):
            source = [extend_index(starts[axis] + j - (k - 1) + p[axis], n, boundary)
                      for j in range(lengths[axis])]
            index_lists.append(np.array(source, dtype=int))
        out += kernel[p] * extended[np.ix_(*index_lists)]
    return out
