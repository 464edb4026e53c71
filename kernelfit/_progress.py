"""Progress of a long fit, for whoever is watching: a tqdm bar, a callback, or nothing.

A fit reports its passes over the pixels tile by tile: 'statistics' (the first pass, and any
design pass), then 'residual'. Nothing here is global: each fit has its own reporter, so fits
in several threads report separately. On Dask, the bar is Dask's own (`_dask`).
"""

import sys

from ._validation import shown


def check_progress(progress):
    """`progress` as given to fit_kernel, checked: False/None, True, or a callable."""
    if progress is None or isinstance(progress, bool) or callable(progress):
        return progress
    raise TypeError(f"progress must be True, False or a callable "
                    f"progress(stage, done, total); got {shown(progress)}")


class Progress:
    """Reports `stage` and tiles done out of a total: to `progress(stage, done, total)`, to a
    tqdm bar on stderr (``progress=True``; tqdm is imported only then), or nowhere."""

    def __init__(self, progress):
        self._callback = progress if callable(progress) else None
        self._bar = progress is True
        self._stage = None

    def __bool__(self):
        return self._callback is not None or self._bar

    @property
    def drawn(self):
        """Whether a bar is drawn (``progress=True``) rather than a callback called."""
        return self._bar

    def start(self, stage, total):
        """Begin a stage of `total` tiles (None: unknown); returns a function of the tiles
        just done."""
        if not self:
            return _nothing
        if self._callback is not None:
            done = [0]

            def step(count=1):
                done[0] += count
                self._callback(stage, done[0], total)

            self._callback(stage, 0, total)
            return step
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"kernelfit: {stage}", unit="tile", file=sys.stderr,
                   leave=False, dynamic_ncols=True)

        def update(count=1):
            bar.update(count)
            if total is not None and bar.n >= total:
                bar.close()

        return update


def _nothing(count=1):
    pass
