"""The ``mummi-like`` command.

Exit codes: 0 the campaign finished with every task done (or the command did
what it was asked), 1 some tasks failed or were canceled, 2 bad input (a spec error, a missing
campaign), 3 the campaign stopped early (a signal or a budget) and can be
resumed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console
from rich.table import Table

from mummi_like import api, events
from mummi_like.campaign.control import SPEC_META, CampaignError, coordinator_running, request_cancel
from mummi_like.campaign.progress import JsonReporter, Reporter, RichReporter, SummaryReporter, tail_lines
from mummi_like.store import Store, StoreError
from mummi_like.tasks import TaskState
from mummi_like.telemetry import store_capacity, store_recent_utilization

if TYPE_CHECKING:
    from mummi_like.plugins import PluginDoc

# The commands that run or build a campaign import the loop, the spec, plugins and submission where they need
# them: `status` and `cancel` through a live coordinator must not pay for numpy, h5py and every backend.

# The exit codes (see the module docstring), defined with the Python API whose outcomes they report.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = api.EXIT_OK, api.EXIT_FAILED, api.EXIT_BAD_INPUT, api.EXIT_STOPPED
STDERR_LINES = 5
CANCELED_NAMED = 5
"""Canceled tasks named per reason by `status`; the rest are counted."""
RECENT_SECONDS = 60.0


def _reporter(args: argparse.Namespace) -> Reporter:
    if args.log_format == "json":
        return JsonReporter()
    if args.quiet:
        return SummaryReporter()
    return RichReporter()


def cmd_run(args: argparse.Namespace) -> int:
    """Validate a spec, create its campaign directory and run the campaign (:func:`mummi_like.run`).

    A directory holding the same campaign is resumed, or, when that campaign
    had finished, its summary is shown again and nothing runs.
    """
    summary = api.run(args.spec, args.dir, reporter=_reporter(args))
    if not summary.ran:
        print(f"mummi-like run: {summary.directory} holds this campaign, which had finished; nothing ran",
              file=sys.stderr)
    return summary.exit_code


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a campaign whose coordinator stopped or died (:func:`mummi_like.resume`)."""
    return api.resume(args.directory, reporter=_reporter(args)).exit_code


def stage_states(store: Store) -> dict[str, str]:
    """Where each scale of the campaign's spec stands as a stage, in spec order.

    ``open`` for a scale without ``depends_on`` or whose upstream stages were
    handed on; ``waiting for <scales>`` until then; ``could not open: <error>``
    after its plugin failed (resume tries again). Read from the saved spec's
    YAML and the event log, so it needs no plugin imported.
    """
    saved = store.get_meta(SPEC_META) or {}
    try:
        # libyaml's loader where PyYAML has it: a spec with long parameter lists parses 10x faster.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        scales = (yaml.load(saved.get("text", ""), Loader=loader) or {}).get("scales") or []  # noqa: S506 (safe)
    except yaml.YAMLError:
        return {}
    outcome: dict[str, str] = {}
    for _, _, kind, data in store.events(kind=events.STAGE_FAILED):
        outcome[data["scale"]] = f"could not open: {data['error']}"
    for _, _, kind, data in store.events(kind=events.STAGE_OPENED):
        outcome[data["scale"]] = "open"
    stages = {}
    for scale in scales:
        if not isinstance(scale, dict) or not isinstance(scale.get("name"), str):
            continue
        depends_on = [str(dep) for dep in scale.get("depends_on") or []]
        stages[scale["name"]] = "open" if not depends_on else outcome.get(
            scale["name"], f"waiting for {', '.join(depends_on)}")
    return stages


def status_report(directory: Path) -> dict[str, object]:
    """Counts per scale and state, stages, running, failed and canceled tasks, read without disturbing a coordinator.

    Every part is read with SQL that does not walk the campaign's history, so
    the answer takes the same time for 100,000 tasks as for ten: the recent
    utilization from the attempts running now or ended in the window, and the
    steady-state utilization as the coordinator computed it when it last
    stopped (``mummi-like report`` computes it afresh from the whole history).
    """
    with Store.open(directory, readonly=True) as store:
        running = store.tasks(states=[TaskState.RUNNING])
        failed = store.tasks(states=[TaskState.FAILED])
        canceled: dict[str, list[str]] = {}  # reason -> tasks: one user request can cancel thousands at once
        for record in store.tasks(states=[TaskState.CANCELED]):
            canceled.setdefault(record.reason or "canceled", []).append(record.id)
        live = coordinator_running(directory)
        cores, gpus = store_capacity(store)
        at_stop = store.events(kind=events.UTILIZATION)
        return {
            "directory": str(directory),
            "coordinator_running": live,
            "utilization": {
                # Without a live coordinator, tasks recorded running are stale (it crashed): no recent figure.
                "recent": store_recent_utilization(store, RECENT_SECONDS) if live else None,
                "steady_state": at_stop[-1][3]["steady_state"] if at_stop else None,
                "cores": cores,
                "gpus": gpus,
            },
            "counts": store.counts(),
            "stages": stage_states(store),
            "running": [
                {"task": r.id, "scale": r.spec.scale, "job_id": r.job_id, "attempt": r.attempt, "started": r.started}
                for r in running
            ],
            "failures": [
                {"task": r.id, "scale": r.spec.scale, "attempts": r.attempt, "reason": r.reason,
                 "stderr": r.stderr, "stderr_tail": tail_lines(r.stderr, STDERR_LINES)}
                for r in failed
            ],
            "canceled": [{"reason": reason, "tasks": tasks} for reason, tasks in canceled.items()],
        }


def _utilization_line(utilization: dict[str, float | int | None]) -> str | None:
    """The status line, e.g. ``utilization: 97.5% of 8 cores busy over the last 60 s; steady state 98.9%``.

    Parts not known (``None``) are left out; ``None`` when nothing is known.
    """
    recent, steady, cores = utilization["recent"], utilization["steady_state"], utilization["cores"]
    if recent is not None:
        line = f"utilization: {100 * recent:.1f}% of {cores} cores busy over the last {RECENT_SECONDS:g} s"
        return line if steady is None else f"{line}; steady state {100 * steady:.1f}%"
    if steady is not None:
        return f"utilization: steady state {100 * steady:.1f}% of {cores} cores"
    return None


def cmd_status(args: argparse.Namespace) -> int:
    """Show where a campaign stands, and with ``--check`` whether its store is sound."""
    directory = Path(args.directory).resolve()
    report = status_report(directory)
    if args.check:
        with Store.open(directory, readonly=True) as store:
            report["integrity_problems"] = store.check_integrity()
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_FAILED if report.get("integrity_problems") else EXIT_OK
    console = Console()
    counts: dict[str, dict[str, int]] = report["counts"]  # type: ignore[assignment]
    states = [state.value for state in TaskState if any(state.value in c for c in counts.values())]
    state = "running" if report["coordinator_running"] else "not running"
    console.print(f"campaign {report['directory']} (coordinator {state})", highlight=False, soft_wrap=True)
    stages: dict[str, str] = report["stages"]  # type: ignore[assignment]
    table = Table()
    table.add_column("scale")
    table.add_column("stage")
    for state in states:
        table.add_column(state, justify="right")
    # Spec order first (the order stages run in), then scales the spec does not name (couplings' trainings).
    for scale in [*stages, *sorted(set(counts) - set(stages))]:
        by_state = counts.get(scale, {})
        table.add_row(scale, stages.get(scale, "open"), *(str(by_state.get(state, 0)) for state in states))
    console.print(table)
    line = _utilization_line(report["utilization"])  # type: ignore[arg-type]
    if line:
        console.print(line, highlight=False, soft_wrap=True)
    for task in report["running"]:  # type: ignore[attr-defined]
        console.print(f"running {task['task']} (job {task['job_id']}, attempt {task['attempt']})", soft_wrap=True)
    for failure in report["failures"]:  # type: ignore[attr-defined]
        console.print(f"[red]failed[/red] {failure['task']} after {failure['attempts']} attempt(s): {failure['reason']}",
                      soft_wrap=True)
        for line in failure["stderr_tail"]:
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
    for group in report["canceled"]:  # type: ignore[attr-defined]
        tasks = group["tasks"]
        named = tasks[0] if len(tasks) == 1 else (
            f"{len(tasks)} tasks ({', '.join(tasks[:CANCELED_NAMED])}{', ...' if len(tasks) > CANCELED_NAMED else ''})")
        console.print(f"[yellow]canceled[/yellow] {named}: {group['reason']}", soft_wrap=True)
    if not args.check:
        return EXIT_OK
    problems: list[str] = report["integrity_problems"]  # type: ignore[assignment]
    for problem in problems:
        console.print(f"integrity problem: {problem}", markup=False, highlight=False, soft_wrap=True)
    console.print("store integrity: " + (f"{len(problems)} problem(s)" if problems else "ok"), highlight=False)
    return EXIT_FAILED if problems else EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a campaign's tasks: through its coordinator when one runs, else directly in the store."""
    directory = Path(args.directory).resolve()
    if coordinator_running(directory):
        path = request_cancel(directory, args.task, args.scale)
        print(f"asked the running coordinator to cancel ({path}); follow with `mummi-like status {directory}`")
        return EXIT_OK
    from mummi_like.campaign.loop import Campaign

    campaign = Campaign.resume(directory, Reporter())
    count = campaign.cancel_offline(args.task, args.scale)
    print(f"canceled {count} task(s) in {directory}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write a campaign's report (PNG figures and a self-contained index.html); the campaign may be running."""
    from mummi_like.report import SUMMARY_FILE, write_report_files  # matplotlib loads only for this command

    index, pngs = write_report_files(Path(args.directory).resolve(), args.out)
    summary = index.parent / SUMMARY_FILE
    if summary.is_file():  # the plugins' science in plain words, then where the figures are
        print(summary.read_text(encoding="utf-8"))
    print(f"report: {index} ({len(pngs)} PNG figure(s) in {index.parent})")
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    """Write the batch scripts of a production run and submit them (or only print them)."""
    from mummi_like import batch_scripts
    from mummi_like.spec import load_spec

    campaign = load_spec(args.spec, directory=args.dir)
    request = batch_scripts.BatchRequest(args.scheduler, args.nodes, args.time, args.queue, args.bank)
    if args.dry_run:
        print(batch_scripts.batch_script(campaign, request), end="")
        print(f"# --dry-run: nothing written or submitted; {batch_scripts.COORDINATOR_SCRIPT} would be:")
        print(batch_scripts.coordinator_script(campaign), end="")
        return EXIT_OK
    batch = batch_scripts.write_scripts(campaign, request, resume=args.resume)
    job_id = batch_scripts.submit_script(batch, args.scheduler)
    print(batch_scripts.follow_hint(job_id, args.scheduler, campaign.directory))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a spec and its plugins' configs without running anything."""
    from mummi_like.spec import load_spec

    resolved = load_spec(args.spec)
    print(f"{args.spec}: valid campaign {resolved.spec.name!r} with scales "
          f"{', '.join(s.spec.name for s in resolved.scales)} on backend {resolved.spec.backend.plugin!r}; "
          f"it would write to {resolved.directory}")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """List the installed scales, selectors, backends and pipelines, or describe one of them and its config keys."""
    from mummi_like import plugins

    if args.name is not None:
        width = min(100, shutil.get_terminal_size().columns)
        print("\n\n".join(plugin_text(doc, width) for doc in plugins.find(args.name)))
        return EXIT_OK
    console = Console()
    for kind in plugins.GROUPS:
        infos = plugins.describe(kind)
        console.print(f"[bold]{kind}s[/bold] ({plugins.GROUPS[kind]})")
        if not infos:
            console.print("  (none installed)")
        for info in infos:
            console.print(f"  {info.name:<12} {info.summary}", highlight=False)
    return EXIT_OK


def plugin_text(doc: PluginDoc, width: int = 100) -> str:
    """``mummi-like plugins NAME``: what the plugin is, then each config key with its type, default and description.

    Plain text, not rich markup: keys such as ``sites[].name`` and docstrings
    quoting TOML tables hold brackets that markup would swallow.
    """
    from mummi_like.plugins import GROUPS

    lines = [f"{doc.name}: {doc.kind} plugin {doc.value} (group {GROUPS[doc.kind]!r})", ""]
    lines += _rewrapped(doc.description, width)
    if not doc.config_model:
        lines += ["", f"config: {doc.name!r} declares no config_model, so no spec can configure it"]
        return "\n".join(lines)
    lines += ["", f"config keys ({doc.config_model}):"]
    lines += _rewrapped(doc.config_description, width)
    for key in doc.keys:
        indent = "  " * (key.depth + 1)
        # A default that is text reads "..." (JSON), so these two words never stand for a default value.
        default = {"see below": "keys below", "required": "required"}.get(key.default, f"default {key.default}")
        lines += ["", f"{indent}{key.key}: {key.type}; {default}"]
        if key.description:
            lines += textwrap.wrap(key.description, width, initial_indent=indent + "    ",
                                   subsequent_indent=indent + "    ")
    return "\n".join(lines)


def _rewrapped(text: str, width: int) -> list[str]:
    """A docstring's lines, indented by two, paragraphs wrapped to ``width``; indented blocks and lists kept as
    written, since rewrapping would run an example's lines together."""
    lines: list[str] = []
    for block in text.split("\n\n"):
        if lines:
            lines.append("")
        if any(line.startswith((" ", "-", "*")) for line in block.splitlines()):
            lines += [f"  {line}" for line in block.splitlines()]
        else:
            lines += textwrap.wrap(" ".join(block.split()), width - 2, initial_indent="  ", subsequent_indent="  ")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(prog="mummi-like", description="Run ML-coupled multiscale simulation campaigns.")
    commands = parser.add_subparsers(dest="command", required=True)

    def output_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--quiet", action="store_true", help="no live display, only the summary (for batch jobs)")
        sub.add_argument("--log-format", choices=["rich", "json"], default="rich",
                         help="'json' prints one JSON object per line (progress, then a summary)")

    run = commands.add_parser("run", help="start a campaign from a spec")
    run.add_argument("spec", type=Path)
    run.add_argument("--dir", type=Path, help="campaign directory (overrides the spec's `directory`)")
    output_options(run)
    run.set_defaults(handler=cmd_run)

    resume = commands.add_parser("resume", help="continue a campaign after its coordinator stopped or died")
    resume.add_argument("directory", type=Path)
    output_options(resume)
    resume.set_defaults(handler=cmd_resume)

    status = commands.add_parser("status", help="counts per scale and state, running tasks, failures")
    status.add_argument("directory", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--check", action="store_true",
                        help="also check the store's integrity (reads the whole history; exit 1 on a problem)")
    status.set_defaults(handler=cmd_status)

    cancel = commands.add_parser("cancel", help="cancel a campaign's tasks (all, or by --task/--scale)")
    cancel.add_argument("directory", type=Path)
    cancel.add_argument("--task", action="append", help="a task id (repeatable)")
    cancel.add_argument("--scale", action="append", help="a scale name (repeatable)")
    cancel.set_defaults(handler=cmd_cancel)

    report = commands.add_parser("report", help="write PNG figures and a self-contained HTML report")
    report.add_argument("directory", type=Path)
    report.add_argument("--out", type=Path, help="folder to write into (default: DIRECTORY/report)")
    report.set_defaults(handler=cmd_report)

    batch = commands.add_parser("submit", help="run a campaign as a batch job (flux batch, or sbatch + flux start)")
    batch.add_argument("spec", type=Path)
    batch.add_argument("--scheduler", choices=["flux", "slurm"], required=True)
    batch.add_argument("--nodes", type=int, required=True)
    batch.add_argument("--time", required=True, help="walltime as HH:MM:SS")
    batch.add_argument("--queue", help="queue (Flux) or partition (Slurm)")
    batch.add_argument("--bank", help="bank (Flux) or account (Slurm)")
    batch.add_argument("--dir", type=Path, help="campaign directory (overrides the spec's `directory`)")
    batch.add_argument("--dry-run", action="store_true", help="print the scripts; write and submit nothing")
    batch.add_argument("--resume", action="store_true", help="continue an existing campaign in a new allocation")
    batch.set_defaults(handler=cmd_submit)

    validate = commands.add_parser("validate", help="check a spec and report every error")
    validate.add_argument("spec", type=Path)
    validate.set_defaults(handler=cmd_validate)

    plugin_list = commands.add_parser("plugins", help="list installed plugins, or describe one and its config keys")
    plugin_list.add_argument("name", nargs="?", help="a plugin's name: print its description and config keys")
    plugin_list.set_defaults(handler=cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except (CampaignError, StoreError) as error:
        print(f"mummi-like {args.command}: {error}", file=sys.stderr)
    except Exception as error:
        # Imported only now: a command that raised one of these has loaded its module already.
        from mummi_like import batch_scripts, plugins
        from mummi_like.backends.base import BackendUnavailable
        from mummi_like.spec import SpecError

        if isinstance(error, SpecError):
            print(error, file=sys.stderr)
        elif isinstance(error, BackendUnavailable | batch_scripts.SubmitError | plugins.UnknownPlugin
                        | plugins.PluginLoadError):
            print(f"mummi-like {args.command}: {error}", file=sys.stderr)
        else:
            raise
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
