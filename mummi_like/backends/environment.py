"""The environment a task runs with, built by one set of rules for every backend.

A task sees two layers. The *inherited* layer is the coordinator's environment,
frozen when the backend starts, plus ``MUMMI_LIKE_CAMPAIGN``: the campaign folder,
by which a restarted coordinator recognises the processes a dead one left
behind. The *task* layer goes on top, each entry overriding the ones before:

1. the thread caps of :data:`THREAD_VARIABLES`, set to the task's cores per
   rank, since oversubscribed BLAS/OpenMP pools run many times slower than one
   thread per reserved core on a shared node;
2. the variables by which the backend names this run of the task
   (``MUMMI_LIKE_JOB_ID`` on the ``local`` backend, ``MUMMI_LIKE_TASK`` on
   Flux, whose job shell fills in the job id itself);
3. ``CUDA_VISIBLE_DEVICES``, where the backend binds GPUs by index itself (the
   ``local`` backend on a node with GPUs; Flux's job shell binds them);
4. the payload's own ``env``, last, so a task can override any of the above.

This module imports nothing heavy: Python workers read :data:`THREAD_VARIABLES`
from it at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mummi_like.tasks import TaskSpec

#: Environment variables that cap library thread pools (OpenMP, MKL, OpenBLAS, numexpr).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: The campaign folder, in every task's environment.
CAMPAIGN_VARIABLE = "MUMMI_LIKE_CAMPAIGN"
#: The backend's job id of this run of the task.
JOB_VARIABLE = "MUMMI_LIKE_JOB_ID"
#: ``<task id>#<attempt>``.
TASK_VARIABLE = "MUMMI_LIKE_TASK"
#: The GPU indices a task may use, as CUDA (and PyTorch, OpenMM) read them.
GPU_VARIABLE = "CUDA_VISIBLE_DEVICES"


def inherited_environment(campaign_dir: Path) -> dict[str, str]:
    """The layer every task of the campaign inherits: the coordinator's environment now, plus the campaign folder."""
    return {**os.environ, CAMPAIGN_VARIABLE: str(campaign_dir)}


def task_environment(task: TaskSpec, names: Mapping[str, str], gpu_ids: Sequence[int] | None = None) -> dict[str, str]:
    """The layer a task runs with on top of the inherited one (see the module docstring for the order).

    ``names`` are the backend's variables naming this run of the task. ``gpu_ids``
    are the GPUs the backend bound to it; ``None`` leaves ``CUDA_VISIBLE_DEVICES``
    alone (the backend does not bind GPUs), while an empty sequence sets it empty,
    which hides a node's GPUs from a task that did not ask for any.
    """
    need = task.resources
    env = {name: str(need.cores // need.ranks) for name in THREAD_VARIABLES}
    env.update(names)
    if gpu_ids is not None:
        env[GPU_VARIABLE] = ",".join(map(str, gpu_ids))
    env.update(task.payload.env)
    return env
