"""Figures of fits and of convolution itself, with matplotlib (imported only when drawing).

These are the figures the command line writes; experiment scripts and notebooks use them too.
"""

from ._plot import fit_figure, kernel_panel, sliding_window_gif

__all__ = ["fit_figure", "kernel_panel", "sliding_window_gif"]
