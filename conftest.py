"""Test-suite configuration shared by unit tests and notebooks.

Quick mode is switched on here, before any notebook kernel starts, so every
kernel that nbval launches inherits GENVAR_QUICK=1 (small epochs, real training).
"""

import os

os.environ["GENVAR_QUICK"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Two workers on a 2-core machine: keep each to one thread so they do not fight.
os.environ.setdefault("OMP_NUM_THREADS", "1")
