"""Warnings that point at the user's line, however deep inside the package they are raised."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stack_level() -> int:
    """The `stacklevel` of the first frame outside `hf_specialist` (counted from the caller of this function), so a
    warning names the user's call whether it came through `fit`, a stream of batches or `discover`."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn` at the user's frame (see `user_stack_level`)."""
    warnings.warn(message, category, stacklevel=user_stack_level())
