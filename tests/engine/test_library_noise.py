"""A library's known start-up noise stays off a command's output; its other lines do not."""

from __future__ import annotations

import subprocess
import sys


def test_bitsandbytes_cpu_kernel_notice_is_dropped_and_other_warnings_stay():
    # A fresh interpreter: the filter is installed the way every tunewiz process does it.
    code = """
import logging
from tunewiz.engine.entry_point import quiet_library_noise
quiet_library_noise()
log = logging.getLogger("bitsandbytes.backends.cpu.ops")
log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please pip install kernels", "x")
log.warning("some other bitsandbytes warning")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "gemm_4bit_forward" not in r.stderr
    assert "some other bitsandbytes warning" in r.stderr
