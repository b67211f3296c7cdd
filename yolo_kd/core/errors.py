"""User-facing errors: one line that names the problem and the fix, never a deep traceback."""

from __future__ import annotations

import sys
from typing import Callable, Sequence


class KDError(Exception):
    """A problem with the user's input or environment. ``str(err)`` names the problem and the fix."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main`` and turn :class:`KDError` (and Ctrl-C) into one line on stderr and an exit code.

    Returns 0 on success, 2 on a user error, 130 on interruption. Unexpected exceptions keep their traceback:
    those are bugs and must stay visible.
    """
    try:
        return int(main(argv) or 0)
    except KDError as e:
        print(f"yolo_kd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yolo_kd: interrupted", file=sys.stderr)
        return 130
