"""The batch scripts of a production run, written and submitted by ``mummi-like submit SPEC --scheduler ...``.

MuMMI runs its whole campaign inside one Flux allocation; so does a submitted
campaign here. Two files are written into the campaign directory:

* ``coordinator.sh`` starts the coordinator: ``run`` the first time, ``resume``
  when the directory already holds a campaign, so the same script continues a
  campaign whose allocation ended at walltime;
* ``batch-flux.sh`` (submitted with ``flux batch``) or ``batch-slurm.sh``
  (submitted with ``sbatch``; it starts a Flux instance over the allocation with
  ``srun ... flux start`` around ``coordinator.sh``, as MuMMI does).

Before the allocation ends the coordinator receives SIGTERM (Flux's time limit;
``--signal=TERM@120`` under Slurm) and stops cleanly, its in-flight tasks
recorded as waiting; ``submit --resume`` submits the same scripts again.
Every value written into a script is quoted for the shell; nothing is run
through a shell on this side (``flux batch`` and ``sbatch`` get an argv).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mummi_like.files import atomic_write_text
from mummi_like.spec import ResolvedCampaign
from mummi_like.store import Store

Scheduler = Literal["flux", "slurm"]
COORDINATOR_SCRIPT = "coordinator.sh"
#: Seconds before the end of a Slurm allocation at which the coordinator is asked to stop.
SLURM_WARNING_SECONDS = 120

_TIME_RE = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


class SubmitError(ValueError):
    """The submission cannot be made as asked; the message says how to fix it."""


def walltime_seconds(text: str) -> int:
    """Seconds in ``[D-]HH:MM:SS`` or ``MM:SS`` (Slurm's forms)."""
    match = _TIME_RE.match(text.strip())
    if not match:
        raise SubmitError(f"--time {text!r} is not HH:MM:SS (or D-HH:MM:SS, MM:SS); write e.g. 12:00:00")
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    if match.group(2) is None:  # MM:SS
        hours, minutes, seconds = 0, int(match.group(3)), int(match.group(4))
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise SubmitError(f"--time {text!r} must be longer than zero")
    return total


@dataclass(frozen=True)
class BatchRequest:
    """What the user asked the batch system for."""

    scheduler: Scheduler
    nodes: int
    time: str
    queue: str | None = None
    bank: str | None = None


def coordinator_script(campaign: ResolvedCampaign, python: str = sys.executable) -> str:
    """The script that runs (first time) or resumes (later) the campaign's coordinator."""
    directory = shlex.quote(str(campaign.directory))
    cli = f"{shlex.quote(python)} -m mummi_like.cli"
    return f"""#!/bin/bash
# Written by `mummi-like submit`: starts the coordinator of campaign {campaign.spec.name!r}.
# The first allocation runs it; any later one (after walltime or a crash) resumes it.
set -euo pipefail
cd {directory}
if [ -e {shlex.quote(str(campaign.directory / Store.FILENAME))} ]; then
    exec {cli} resume {directory} --log-format json
else
    exec {cli} run {shlex.quote(str(campaign.source))} --dir {directory} --log-format json
fi
"""


def batch_script(campaign: ResolvedCampaign, request: BatchRequest) -> str:
    """The batch script for ``request.scheduler`` that runs ``coordinator.sh`` inside the allocation."""
    seconds = walltime_seconds(request.time)
    name = f"mummi-{campaign.spec.name}"
    coordinator = shlex.quote(str(campaign.directory / COORDINATOR_SCRIPT))
    if request.scheduler == "flux":
        directives = [f"--nodes={request.nodes}", f"--time-limit={seconds}s", f"--job-name={name}",
                      f"--output={campaign.directory}/batch-{{{{id}}}}.out"]
        if request.queue:
            directives.append(f"--queue={request.queue}")
        if request.bank:
            directives.append(f"--bank={request.bank}")
        header = "\n".join(f"#flux: {shlex.quote(directive)}" for directive in directives)
        launch = f"bash {coordinator}"
    else:
        if seconds <= SLURM_WARNING_SECONDS:
            raise SubmitError(f"--time {request.time} leaves no room for the {SLURM_WARNING_SECONDS} s stop warning")
        directives = [f"--nodes={request.nodes}", f"--time={request.time}", f"--job-name={name}",
                      f"--output={campaign.directory}/batch-%j.out", "--exclusive",
                      f"--signal=TERM@{SLURM_WARNING_SECONDS}"]
        if request.queue:
            directives.append(f"--partition={request.queue}")
        if request.bank:
            directives.append(f"--account={request.bank}")
        header = "\n".join(f"#SBATCH {shlex.quote(directive)}" for directive in directives)
        launch = f"srun --nodes={request.nodes} --ntasks-per-node=1 --mpi=none flux start bash {coordinator}"
    return f"""#!/bin/bash
{header}
# Written by `mummi-like submit` for campaign {campaign.spec.name!r}; resubmit with `mummi-like submit ... --resume`.
set -euo pipefail
{launch}
"""


def write_scripts(campaign: ResolvedCampaign, request: BatchRequest, resume: bool) -> Path:
    """Check the request against the campaign, write both scripts, and return the batch script's path."""
    if request.nodes < 1:
        raise SubmitError("--nodes must be at least 1")
    if request.nodes > 1 and campaign.spec.backend.plugin == "local":
        raise SubmitError(
            f"the spec's backend is 'local', which uses one node, but --nodes is {request.nodes}; "
            "set `backend: {plugin: flux}` in the spec to use the whole allocation"
        )
    exists = (campaign.directory / Store.FILENAME).exists()
    if exists and not resume:
        raise SubmitError(f"{campaign.directory} already holds a campaign; add --resume to continue it in a new allocation")
    if resume and not exists:
        raise SubmitError(f"--resume: {campaign.directory} holds no campaign yet; submit without --resume first")
    script = batch_script(campaign, request)
    campaign.directory.mkdir(parents=True, exist_ok=True)
    coordinator = campaign.directory / COORDINATOR_SCRIPT
    atomic_write_text(coordinator, coordinator_script(campaign), permissions=0o755)
    batch = campaign.directory / f"batch-{request.scheduler}.sh"
    atomic_write_text(batch, script, permissions=0o755)
    return batch


def submit_script(batch: Path, scheduler: Scheduler) -> str:
    """Hand the batch script to the scheduler and return the job id it printed."""
    command = ["flux", "batch", str(batch)] if scheduler == "flux" else ["sbatch", "--parsable", str(batch)]
    if shutil.which(command[0]) is None:
        raise SubmitError(f"`{command[0]}` is not on PATH: submit from a login node of a {scheduler} system, "
                          "or use --dry-run to see the script")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SubmitError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip().split(";")[0]


def follow_hint(job_id: str, scheduler: Scheduler, directory: Path) -> str:
    """How to follow a submitted campaign."""
    watch = f"flux jobs {job_id}" if scheduler == "flux" else f"squeue -j {job_id}"
    return (f"submitted as {job_id}; follow it with `mummi-like status {directory}` and `{watch}`; "
            f"the coordinator's log is {directory}/batch-{job_id}.out")
