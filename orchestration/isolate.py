"""Run a step's heavy library call in a process of its own.

Dagster materialises a run's assets one after another in one process (the in-process
executor of ``tessera run``, and the run worker of ``dagster dev``). At 1,000,000
persons the linking, the evaluation and the publish each need several GB, and what one
step's polars frames and DuckDB connections leave behind the next step does not get
back: a day's run reached 21.3 GiB and then, the next day, was killed by the kernel at
23.7 GiB while building the warehouse. A step's call run in a spawned child gives all
its memory back when the child exits.

``TESSERA_ISOLATE_STEPS``: ``1`` always, ``0`` never, else (default) when the staged
mention files of the home exceed :data:`AUTO_BYTES`.

The children are forked from a multiprocessing *forkserver* that imported the step
modules once (:data:`PRELOAD`): a spawned child imported them again for every step,
2.5-4.5 s each (``orchestration.linkage`` pulls in Dagster, Splink, polars and DuckDB),
four times a day. :func:`warm` starts that server early, so its imports overlap the
ingest. The server forks before any polars or DuckDB work has started threads.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tessera.config import Home

T = TypeVar("T")

AUTO_BYTES = 256 * 1024 * 1024
# The modules whose functions the steps run in a child (imported once by the server).
PRELOAD = [
    "orchestration.linkage",
    "orchestration.warehouse",
    "linkage.incremental",
    "linkage.report",
    "linkage.run",
    "warehouse.publish",
    # The business features' city names (and pypinyin with them): imported on the
    # business link's first use, 0.33 s of each day's step otherwise.
    "connectors.parsing.regions",
]


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm(home: Home) -> bool:
    """Start the fork server now (its imports run in the background) when the steps on
    ``home`` will be isolated; returns whether they will."""
    if not isolate(home):
        return False
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()
    return True


def isolate(home: Home) -> bool:
    """Whether steps on ``home`` run their heavy calls in a child process."""
    setting = os.environ.get("TESSERA_ISOLATE_STEPS", "auto").strip().lower()
    if setting in ("1", "true", "yes"):
        return True
    if setting in ("0", "false", "no"):
        return False
    from connectors import lake

    size = sum(p.stat().st_size for p in lake.staged_files(home, "mentions"))
    return size > AUTO_BYTES


def call(home: Home, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, in a child process of its own when :func:`isolate` says
    so (forked by the fork server; ``fn`` and its arguments must pickle: module-level
    functions, homes, paths, strings); an exception in the child is raised here."""
    if not isolate(home):
        return fn(*args, **kwargs)
    with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
        return pool.submit(_in_child, fn, *args, **kwargs).result()


def _in_child(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` with the child's standard output sent to standard error: the result
    comes back pickled, and a stray print (DuckDB's progress bar on a long query) must
    not land in the parent's output (``tessera run --json``)."""
    sys.stdout.flush()
    os.dup2(2, 1)
    return fn(*args, **kwargs)
