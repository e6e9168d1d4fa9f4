"""What runs ON the Ray cluster: training and evaluation entrypoints, and the
experiment files they read. Submitted with `ray job submit --working-dir .`."""

import os

# Ray's driver merges log lines of different workers that differ only in their digits ("trial
# 3f2a1_00000: ..." and "trial 3f2a1_00001: ..."), keeping one: every trial's line is kept instead.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
