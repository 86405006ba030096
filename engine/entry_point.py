"""How every tunewiz process starts and ends: the CLI, a detached supervisor, a rank worker.

Errors a user can cause (TunewizError) become one line on stderr and exit code 1, never a
traceback; Ctrl-C is exit 130. `kill -USR1 PID` prints every thread's Python stack to
stderr (for a training process, its log) and carries on: the first thing to look at when
a run seems stuck (`tunewiz stacks` does it for a whole run). Output piped into `head` or
`less` that stops reading ends the command quietly, as it ends `cat`.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Callable


# Said by bitsandbytes at import on CPUs with AVX512-BF16 when the optional `kernels`
# package is missing. It falls back to its own kernel, and tunewiz never runs 4-bit on a
# CPU (QLoRA needs CUDA), so the line would only be noise above a command's one-line output.
QUIET_LIBRARY_LINES = {"bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward"}


def quiet_library_noise() -> None:
    import logging

    for name, start in QUIET_LIBRARY_LINES.items():
        logging.getLogger(name).addFilter(lambda record, start=start: not str(record.msg).startswith(start))


def run_entry(main: Callable[[], int | None]) -> int:
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (OSError, ValueError, AttributeError):  # stderr is no real file (captured, embedded)
        pass
    quiet_library_noise()
    from .contract.errors import TunewizError

    try:
        return main() or 0
    except TunewizError as e:
        print(f"tunewiz: error: {e.one_line()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tunewiz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader is gone: nothing more can be said, and the flush at exit must not
        # fail again on the dead pipe. 141 is what a shell reports for SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
