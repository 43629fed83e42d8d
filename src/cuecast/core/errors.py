"""Exit codes and the one start-up error, shared by every command and process.

0 success, 1 runtime failure, 2 bad input (config, source, arguments, a calibration): the message says what
is wrong and how to fix it, and no traceback is printed. systemd restarts on 1, not on 2 (see the unit).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class StartupError(Exception):
    """A problem a person must fix before the process can start; the text names the fix."""
