"""Short full garbage collections in the processes that train: what was built with the algorithm, frozen.

A process that has built an RLlib algorithm (or an env runner) holds a few hundred thousand long-lived
objects: Ray's, torch's, RLlib's, the modules. Each of CPython's full (generation-2) collections walks
all of them, 0.2-0.3 s on the 2-core development machine, in whatever phase it falls: a 0.37 s round of
sampling took 0.63 s in the driver's clock (bench/throughput.py's PPO, 30 iterations: one such pause
without this, none with it). `gc.freeze()` moves every object alive at that moment into a permanent
generation the collector skips, as CPython's docs describe for long-lived processes; what is made later
is collected as before, and reference counting still frees frozen objects.

Only cyclic garbage among frozen objects is never freed, so a process freezes once, after its first
build (a process that builds again keeps at most its first build's cycles): the driver or trainer actor
of `jobs.train` and each remote env runner. Sweep trials, short and many to a reused actor, do not.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_built_objects() -> None:
    """Freeze every object alive now, the first time this process asks; later calls do nothing."""
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


def build_algo(config):
    """`config.build_algo()`, then what it built frozen (freeze_built_objects)."""
    algo = config.build_algo()
    freeze_built_objects()
    return algo
