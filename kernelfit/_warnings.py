"""The two warnings a fit can raise: the data do not determine the kernel, or contradict the model.

Each message says what was found and which argument (or command-line flag) would help.
"""

__all__ = ["IdentifiabilityWarning", "ModelWarning"]


class IdentifiabilityWarning(UserWarning):
    """The data do not determine every kernel coefficient; a minimum-norm kernel was returned."""


class ModelWarning(UserWarning):
    """The data contradict the model: the filter is not linear, not shift-invariant, or the
    kernel's size or placement leaves much of the output unexplained."""
