"""`mummi-like submit`: batch scripts for Flux and Slurm, and a real submission inside a Flux instance."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mummi_like.spec import ResolvedCampaign, load_spec
from mummi_like.store import Store
from mummi_like.batch_scripts import BatchRequest, SubmitError, batch_script, walltime_seconds, write_scripts

CLI = [sys.executable, "-m", "mummi_like.cli"]


def campaign(tmp_path: Path, backend: str = "flux") -> ResolvedCampaign:
    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: production
        directory: runs/production
        backend: {{plugin: {backend}}}
        scales:
          - name: sim
            plugin: command
            config: {{argv: ["sh", "-c", "echo {{task_id}} >> {tmp_path}/ran.log"], parameters: {{i: [1, 2, 3]}}}}
        """))
    return load_spec(spec)


def directives(script: str, prefix: str) -> list[str]:
    return [item for line in script.splitlines() if line.startswith(prefix)
            for item in shlex.split(line[len(prefix):])]


@pytest.mark.parametrize(("text", "seconds"), [("12:00:00", 43200), ("1-00:30:00", 88200), ("45:30", 2730)])
def test_walltime_forms(text: str, seconds: int) -> None:
    assert walltime_seconds(text) == seconds


@pytest.mark.parametrize("text", ["12h", "1:2:3:4", ""])
def test_bad_walltime_says_the_expected_form(text: str) -> None:
    with pytest.raises(SubmitError, match="HH:MM:SS"):
        walltime_seconds(text)
    with pytest.raises(SubmitError, match="longer than zero"):
        walltime_seconds("00:00:00")


def test_flux_batch_script_asks_for_the_allocation_and_runs_the_coordinator(tmp_path: Path) -> None:
    resolved = campaign(tmp_path)
    script = batch_script(resolved, BatchRequest("flux", nodes=4, time="02:00:00", queue="pbatch", bank="chem"))
    assert directives(script, "#flux:") == [
        "--nodes=4", "--time-limit=7200s", "--job-name=mummi-production",
        f"--output={resolved.directory}/batch-{{{{id}}}}.out", "--queue=pbatch", "--bank=chem",
    ]
    assert f"bash {resolved.directory / 'coordinator.sh'}" in script
    assert "srun" not in script and "mpirun" not in script


def test_slurm_script_wraps_the_coordinator_in_flux_start_and_warns_before_walltime(tmp_path: Path) -> None:
    resolved = campaign(tmp_path)
    script = batch_script(resolved, BatchRequest("slurm", nodes=2, time="1-00:00:00", queue="pdebug", bank="chem"))
    assert directives(script, "#SBATCH") == [
        "--nodes=2", "--time=1-00:00:00", "--job-name=mummi-production",
        f"--output={resolved.directory}/batch-%j.out", "--exclusive", "--signal=TERM@120",
        "--partition=pdebug", "--account=chem",
    ]
    assert (f"srun --nodes=2 --ntasks-per-node=1 --mpi=none flux start bash {resolved.directory / 'coordinator.sh'}"
            in script)


def test_scripts_run_first_and_resume_later(tmp_path: Path) -> None:
    resolved = campaign(tmp_path)
    batch = write_scripts(resolved, BatchRequest("flux", 1, "00:10:00"), resume=False)
    coordinator = (resolved.directory / "coordinator.sh").read_text()
    assert batch == resolved.directory / "batch-flux.sh"
    assert batch.stat().st_mode & 0o777 == 0o755
    assert f"resume {resolved.directory} --log-format json" in coordinator
    assert f"run {resolved.source} --dir {resolved.directory} --log-format json" in coordinator
    subprocess.run(["bash", "-n", str(batch)], check=True)
    subprocess.run(["bash", "-n", str(resolved.directory / "coordinator.sh")], check=True)


def test_submit_refuses_what_would_go_wrong(tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="backend is 'local', which uses one node"):
        write_scripts(campaign(tmp_path, backend="local"), BatchRequest("flux", 2, "01:00:00"), resume=False)
    resolved = campaign(tmp_path)
    with pytest.raises(SubmitError, match="holds no campaign yet"):
        write_scripts(resolved, BatchRequest("flux", 1, "01:00:00"), resume=True)
    resolved.directory.mkdir(parents=True)
    Store.open(resolved.directory).close()
    with pytest.raises(SubmitError, match="add --resume"):
        write_scripts(resolved, BatchRequest("flux", 1, "01:00:00"), resume=False)
    with pytest.raises(SubmitError, match="stop warning"):
        batch_script(resolved, BatchRequest("slurm", 1, "00:01:00"))


def test_dry_run_prints_both_scripts_and_writes_nothing(tmp_path: Path) -> None:
    resolved = campaign(tmp_path)
    result = subprocess.run([*CLI, "submit", str(resolved.source), "--scheduler", "slurm", "--nodes", "1",
                             "--time", "00:30:00", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --time=00:30:00" in result.stdout and "exec " in result.stdout
    assert not resolved.directory.exists()


@pytest.mark.flux
def test_real_submission_inside_a_flux_instance_runs_the_campaign(flux_instance: str, tmp_path: Path) -> None:
    resolved = campaign(tmp_path)
    result = subprocess.run([*CLI, "submit", str(resolved.source), "--scheduler", "flux", "--nodes", "1",
                             "--time", "00:05:00"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("submitted as ")
    job_id = result.stdout.split()[2].rstrip(";")
    attach = subprocess.run(["flux", "job", "attach", job_id], capture_output=True, text=True, timeout=180)
    assert attach.returncode == 0, attach.stderr
    deadline = time.monotonic() + 30
    while not (tmp_path / "ran.log").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    with Store.open(resolved.directory, readonly=True) as store:
        assert store.counts() == {"sim": {"done": 3}}
    assert sorted((tmp_path / "ran.log").read_text().split()) == ["sim.0", "sim.1", "sim.2"]


@pytest.mark.flux
def test_campaign_outliving_its_allocation_resumes_in_the_next_one(flux_instance: str, tmp_path: Path) -> None:
    spec = tmp_path / "campaign.yaml"
    marker = tmp_path / "first-allocation"
    spec.write_text(textwrap.dedent(f"""
        name: long
        directory: run
        backend: {{plugin: flux}}
        scales:
          - name: sim
            plugin: command
            config:
              # The first allocation is too short for it; the second finds the marker and finishes.
              argv: ["sh", "-c", "if [ -e {marker} ]; then true; else touch {marker}; sleep 1000; fi"]
              resources: {{walltime: 600}}
        """))

    def allocation(*extra: str) -> None:
        result = subprocess.run([*CLI, "submit", str(spec), "--scheduler", "flux", "--nodes", "1", *extra],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        job_id = result.stdout.split()[2].rstrip(";")
        subprocess.run(["flux", "job", "attach", job_id], capture_output=True, timeout=180)

    allocation("--time", "00:00:20")
    with Store.open(tmp_path / "run", readonly=True) as store:
        record = store.get("sim.0")
    assert marker.exists()
    assert record.state.value in ("retrying", "queued", "running"), record.state
    assert record.failures == 0, "the end of an allocation is not the task's failure"
    allocation("--time", "00:02:00", "--resume")
    with Store.open(tmp_path / "run", readonly=True) as store:
        assert store.counts() == {"sim": {"done": 1}}
        assert store.get("sim.0").failures == 0
