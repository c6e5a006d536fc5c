"""A campaign's report: PNG figures and one self-contained HTML page.

:func:`write_report` reads the campaign store read-only (so it may run while a
coordinator works), computes :mod:`~mummi_like.telemetry`, draws the figures
with matplotlib's Agg backend and writes ``index.html`` with every figure
embedded as a base64 ``data:`` URI, inline CSS, no script and no external
address: the file can be mailed or archived on its own. Every file is written
atomically (:func:`mummi_like.files.atomic_write`), so a browser reloading the
page, or a report run again while the campaign goes on, never reads half a file.

Plugins add their own science to the report: each scale plugin's
:meth:`~mummi_like.scale.Scale.report_sections` ``(view, scale_name)`` and the
campaign policy's :meth:`~mummi_like.campaign.policy.Policy.report_sections`
``(view)`` return lists of :class:`ReportSection`, rendered under "Science".
They read the campaign through a read-only
:class:`~mummi_like.view.CampaignView`. A hook that raises shows its error in
the report instead of stopping it.

matplotlib is imported only when a report is drawn, so a plugin module that
imports :class:`ReportSection` costs the coordinator nothing.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mummi_like.campaign.control import SPEC_META, coordinator_running
from mummi_like.campaign.progress import tail_lines
from mummi_like.files import atomic_write_bytes, atomic_write_text
from mummi_like.store import Store
from mummi_like.tasks import TaskState
from mummi_like.telemetry import (
    REQUEUED,
    Resource,
    Telemetry,
    busy_timeline,
    gantt_lanes,
    overall_utilization,
    read_telemetry,
    steady_state,
    steady_state_utilization,
    throughput,
)
from mummi_like.view import CampaignView

if TYPE_CHECKING:
    import matplotlib.figure
    from matplotlib.axes import Axes

REPORT_FOLDER = "report"
"""Where :func:`write_report` writes, inside the campaign directory, unless told otherwise."""
GANTT_LIMIT = 2000
"""Most attempts drawn in the Gantt chart; a larger campaign shows its latest ones."""
FAILURE_LIMIT = 200
"""Most failed tasks listed in the report."""
STDERR_LINES = 5
THROUGHPUT_BINS = 50
DPI = 110
SUMMARY_FILE = "summary.txt"
"""The plain text of the report's science sections, beside ``index.html``: what ``mummi-like report`` prints."""


@dataclass
class ReportSection:
    """One section a plugin contributes to the report's "Science" part.

    Attributes
    ----------
    title
        The section's heading (escaped by the report).
    figure
        A matplotlib figure, embedded and saved as ``<slug>.png``.
    html
        A trusted HTML fragment (e.g. a table); text inside it that came from
        data must be escaped by the plugin (:func:`html.escape`).
    text
        Plain text, escaped by the report; line breaks are kept.
    """

    title: str
    figure: matplotlib.figure.Figure | None = None
    html: str | None = None
    text: str | None = None


@dataclass
class PluginSections:
    """What one plugin's hook gave: its sections, or the error that stopped it.

    Attributes
    ----------
    owner
        Who contributed, e.g. ``"scale dock (DockScale)"``.
    sections
        The sections the hook returned.
    error
        Why the hook gave nothing usable, or ``None``.
    """

    owner: str
    sections: list[ReportSection] = field(default_factory=list)
    error: str | None = None


def collect_sections(view: CampaignView, owners: Iterable[tuple[str, Any, str | None]]) -> list[PluginSections]:
    """Call every plugin's ``report_sections`` hook, catching what a hook raises.

    Parameters
    ----------
    view
        The campaign, read-only, passed to each hook.
    owners
        ``(label, plugin class, scale name)``: a scale's hook is called with
        ``(view, scale name)``, the policy's (scale name ``None``) with
        ``(view)``; classes without a callable ``report_sections`` are skipped.

    Returns
    -------
    list of PluginSections
        One entry per hook that gave sections or failed, in the order given; a
        hook that raised or returned something other than a list of
        :class:`ReportSection` has its ``error`` set, one that returned an empty
        list (the base classes' default) has no entry.
    """
    collected: list[PluginSections] = []
    for label, cls, scale_name in owners:
        hook = getattr(cls, "report_sections", None)
        if not callable(hook):
            continue
        try:
            sections = hook(view) if scale_name is None else hook(view, scale_name)
        except Exception as error:  # a plugin's bug must not cost the whole report
            collected.append(PluginSections(label, error=f"report_sections raised {type(error).__name__}: {error}"))
            continue
        if not isinstance(sections, list | tuple) or not all(isinstance(s, ReportSection) for s in sections):
            collected.append(PluginSections(
                label, error=f"report_sections returned {type(sections).__name__}, not a list of ReportSection"))
            continue
        if sections:
            collected.append(PluginSections(label, list(sections)))
    return collected


def plugin_owners(resolved: Any) -> list[tuple[str, Any, str | None]]:
    """``(label, class, scale name)`` of the policy, then of each scale plugin, of a resolved campaign.

    The policy comes first: its sections see across scales (a pipeline's outcome), which is what a reader wants
    before any one scale's detail.
    """
    owners: list[tuple[str, Any, str | None]] = [(f"policy ({resolved.policy.__name__})", resolved.policy, None)]
    owners += [
        (f"scale {scale.spec.name} ({scale.plugin.__name__})", scale.plugin, scale.spec.name)
        for scale in resolved.scales
    ]
    return owners


# -- small helpers --------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _time_unit(span: float) -> tuple[float, str]:
    """Divisor and axis label for relative times spanning ``span`` seconds."""
    if span > 7200:
        return 3600.0, "hours since first start"
    if span > 300:
        return 60.0, "minutes since first start"
    return 1.0, "seconds since first start"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "section"


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _campaign_name(spec_meta: Any) -> str | None:
    try:
        data = yaml.safe_load(spec_meta["text"])
        name = data.get("name") if isinstance(data, dict) else None
        return None if name is None else str(name)
    except Exception:
        return None


# -- figures ----------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> matplotlib.figure.Figure:
    """A figure that belongs to no pyplot state (drawn with Agg, never shown)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        # Agg, set before pyplot is imported, so that a plugin's pyplot figures draw headless too. Where
        # pyplot is already loaded (a notebook), its backend is left alone: switching would close its figures.
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(figure: matplotlib.figure.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    if "matplotlib.pyplot" in sys.modules:  # a plugin's pyplot figure: release it
        import matplotlib.pyplot as plt

        plt.close(figure)
    return buffer.getvalue()


def _colors(scales: Iterable[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    names = sorted(set(scales))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _values_at(steps: list[tuple[float, int]], times: Sequence[float]) -> list[int]:
    """Values of a step function at ``times`` (sorted)."""
    values, i, value = [], 0, 0
    for t in times:
        while i < len(steps) and steps[i][0] <= t:
            value = steps[i][1]
            i += 1
        values.append(value)
    return values


def _shade(ax: Axes, periods: Sequence[tuple[float, float]], t0: float, unit: float, label: str | None) -> None:
    if not periods:
        return
    xs, ys = [], []
    for a, b in periods:
        xs += [(a - t0) / unit, (b - t0) / unit]
        ys += [1, 0]
    ax.fill_between(xs, 0, ys, step="post", transform=ax.get_xaxis_transform(), color="#2a9d8f", alpha=0.12,
                    linewidth=0, label=label)


def utilization_figure(data: Telemetry, t0: float, colors: dict[str, Any]) -> matplotlib.figure.Figure:
    """Busy cores (and GPUs) over time, stacked by scale, with capacity and the steady state shaded."""
    from matplotlib.ticker import MaxNLocator

    resources: list[Resource] = ["cores", "gpus"] if data.gpus > 0 else ["cores"]
    figure = _figure(10, 3.6 * len(resources))
    axes = figure.subplots(len(resources), 1, sharex=True, squeeze=False)[:, 0]
    span = max(data.elapsed, 1e-9)
    unit, unit_label = _time_unit(span)
    periods = steady_state(data)
    scales = sorted({i.scale for i in data.intervals})
    for ax, resource in zip(axes, resources):
        per_scale = {scale: busy_timeline(data.intervals, resource, scale) for scale in scales}
        times = sorted({t for steps in per_scale.values() for t, _ in steps})
        xs = [(t - t0) / unit for t in times]
        shown = [scale for scale in scales if any(v for _, v in per_scale[scale])]
        if xs and shown:
            ax.stackplot(xs, *[_values_at(per_scale[s], times) for s in shown], step="post",
                         colors=[colors[s] for s in shown], labels=shown, alpha=0.85, linewidth=0)
        capacity = data.capacity(resource)
        if capacity:
            ax.axhline(capacity, color="black", linestyle="--", linewidth=1, label=f"capacity ({capacity})")
        _shade(ax, periods, t0, unit, "steady state (work waiting)")
        ax.set_ylabel(f"busy {resource}")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(capacity, max((sum(v) for v in zip(*[_values_at(per_scale[s], times) for s in shown])),
                                          default=0), 1) * 1.08)
        ax.margins(x=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].set_title("Resources busy over time, by scale")
    axes[-1].set_xlabel(unit_label)
    return figure


GANTT_MARKS = {
    "failed": ("#c00000", "///", "failed attempt"),
    "requeued": ("#303030", "..", "killed and requeued (not a failure)"),
}
"""How the Gantt marks an attempt that did not end done: its edge colour, hatch and legend entry. An attempt cut
short by its coordinator's stop or death (or a lost allocation) is not the task's failure, so it is not drawn as one."""
_GANTT_KINDS = {"failed": "failed", "retrying": "failed", REQUEUED: "requeued", "running": "running"}
""":attr:`Interval.outcome` -> how the Gantt draws the attempt; anything else (done, canceled) is drawn plain."""


def gantt_figure(data: Telemetry, t0: float, colors: dict[str, Any]) -> tuple[matplotlib.figure.Figure, str]:
    """One row per core slot, a bar per attempt, failed and killed attempts marked apart; the figure and its caption."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    ordered = sorted(data.intervals, key=lambda i: (i.start, i.end))
    shown = ordered[-GANTT_LIMIT:]
    caption = f"{len(shown)} attempts on {data.cores} core slots."
    if len(shown) < len(ordered):
        caption = (f"Truncated: the {len(shown):,} attempts that started last, of {len(ordered):,}, "
                   f"on {data.cores} core slots.")
    slots = data.cores
    try:
        placed = gantt_lanes(shown, slots)
    except ValueError as error:
        slots = max((v for _, v in busy_timeline(shown)), default=1)
        placed = gantt_lanes(shown, slots)
        caption += f" Warning: the attempts do not fit the recorded capacity ({error}); drawn on {slots} slots."
    lanes: dict[int, list[int]] = {}
    by_id = {id(i): i for i in shown}
    for slot, interval in placed:
        lanes.setdefault(id(interval), []).append(slot)
    span = max(data.elapsed, 1e-9)
    unit, unit_label = _time_unit(span)
    figure = _figure(10, min(14, max(2.5, 0.22 * slots + 1.6)))
    ax = figure.subplots()
    groups: dict[tuple[str, str], list[list[tuple[float, float]]]] = {}
    for key, lane_list in lanes.items():
        interval = by_id[key]
        kind = _GANTT_KINDS.get(interval.outcome, "ok")
        x0, x1 = (interval.start - t0) / unit, (interval.end - t0) / unit
        lane_list.sort()
        run_start = previous = lane_list[0]
        for lane in [*lane_list[1:], None]:  # contiguous lanes make one rectangle
            if lane is not None and lane == previous + 1:
                previous = lane
                continue
            y0, y1 = run_start - 0.4, previous + 0.4
            groups.setdefault((interval.scale, kind), []).append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            if lane is not None:
                run_start = previous = lane
    for (scale, kind), polygons in sorted(groups.items()):
        edge, hatch, _ = GANTT_MARKS.get(kind, ("white", None, None))
        ax.add_collection(PolyCollection(
            polygons, facecolors=colors[scale], alpha=0.55 if kind == "running" else 0.9,
            edgecolors=edge, linewidths=1.2 if kind in GANTT_MARKS else 0.6, hatch=hatch,
        ))
    ax.set_xlim((min(i.start for i in shown) - t0) / unit, (max(i.end for i in shown) - t0) / unit)
    ax.set_ylim(-0.6, slots - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel("core slot")
    if slots <= 32:
        ax.set_yticks(range(slots))
    ax.set_xlabel(unit_label)
    ax.set_title("Attempts per core slot")
    handles = [Patch(facecolor=colors[s], label=s) for s in sorted({i.scale for i in shown})]
    for marked, (edge, hatch, label) in GANTT_MARKS.items():
        if any(kind == marked for _, kind in groups):
            handles.append(Patch(facecolor="white", edgecolor=edge, hatch=hatch, label=label))
    if any(kind == "running" for _, kind in groups):
        handles.append(Patch(facecolor="grey", alpha=0.55, label="still running"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return figure, caption


def throughput_figure(data: Telemetry, t0: float, colors: dict[str, Any]) -> tuple[matplotlib.figure.Figure, str]:
    """Tasks done per time bin, per scale."""
    span = max(data.elapsed, (data.completions[-1][0] - t0) if data.completions else 0.0)
    bin_seconds = max(1.0, span / THROUGHPUT_BINS)
    rates = throughput(data.completions, bin_seconds, origin=min(t0, data.completions[0][0]))
    unit, unit_label = _time_unit(span)
    figure = _figure(10, 3.2)
    ax = figure.subplots()
    for scale, bins in rates.items():
        xs = [(start - t0) / unit for start, _ in bins]
        ax.step(xs + [xs[-1] + bin_seconds / unit], [n for _, n in bins] + [bins[-1][1]], where="post",
                color=colors.get(scale), label=scale, linewidth=1.6)
    ax.set_xlabel(unit_label)
    ax.set_ylabel(f"tasks done per {bin_seconds:.3g} s")
    ax.set_title("Throughput by scale")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return figure, f"Tasks completed done, in bins of {bin_seconds:.3g} s."


def queue_figure(data: Telemetry, t0: float) -> matplotlib.figure.Figure:
    """Backend queue depth over time."""
    span = max(data.elapsed, data.queue[-1][0] - t0, 1e-9)
    unit, unit_label = _time_unit(span)
    xs = [(t - t0) / unit for t, _ in data.queue]
    ys = [depth for _, depth in data.queue]
    end = (max(data.now, data.queue[-1][0]) - t0) / unit if ys[-1] else xs[-1]
    figure = _figure(10, 3.0)
    ax = figure.subplots()
    ax.step(xs + [end], ys + [ys[-1]], where="post", color="#264653", linewidth=1.2)
    ax.fill_between(xs + [end], ys + [ys[-1]], step="post", color="#264653", alpha=0.2)
    ax.set_xlabel(unit_label)
    ax.set_ylabel("tasks queued")
    ax.set_title("Backend queue depth (submitted, not yet started)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    return figure


def latency_figure(data: Telemetry, t0: float) -> matplotlib.figure.Figure | None:
    """The coordinator's reaction time per loop-stats window; ``None`` when no window measured one."""
    rows = [s for s in data.loop_stats if s.get("reaction_ms_p50") is not None]
    if not rows:
        return None
    span = max(max(s["time"] for s in rows) - t0, data.elapsed, 1e-9)
    unit, unit_label = _time_unit(span)
    xs = [(s["time"] - t0) / unit for s in rows]
    figure = _figure(10, 3.0)
    ax = figure.subplots()
    plotted: list[float] = []
    for key, label, style in (("reaction_ms_p50", "p50", "-o"), ("reaction_ms_p95", "p95", "-s"),
                              ("reaction_ms_max", "max", ":^")):
        ys = [float(y) for s in rows if (y := s.get(key)) is not None]
        if len(ys) == len(rows):
            ax.plot(xs, ys, style, label=label, markersize=4, linewidth=1.2)
            plotted += ys
    positive = [y for y in plotted if y > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(unit_label + " (end of each window)")
    ax.set_ylabel("reaction time (ms)")
    ax.set_title("Coordinator reaction time: backend event to next submission")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, which="both")
    return figure


# -- HTML -------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.meta td:first-child { color: #555; }
.big { display: inline-block; margin: 0.4em 1.5em 0.4em 0; }
.big .value { font-size: 2.6em; font-weight: 600; color: #1d6f64; }
.big .label { color: #555; font-size: 0.9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.4em; margin: 0; white-space: pre-wrap; font-size: 0.85em; }
.note { color: #555; font-style: italic; } .error { color: #b00020; }
.plain { white-space: pre-wrap; }
"""


class _Page:
    """Collects HTML parts and the PNGs they embed."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts: list[str] = []
        self.pngs: list[Path] = []
        self.texts: list[str] = []  # the science sections' plain text, for a terminal

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def figure(self, figure: matplotlib.figure.Figure, name: str, caption: str | None = None, alt: str = "") -> None:
        stem, n = name, 2
        while self.out / f"{name}.png" in self.pngs:
            name, n = f"{stem}-{n}", n + 1
        data = _png(figure)
        path = self.out / f"{name}.png"
        atomic_write_bytes(path, data)
        self.pngs.append(path)
        encoded = base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        self.add(f'<figure><img alt="{_e(alt or name)}" src="data:image/png;base64,{encoded}">{cap}</figure>')


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] = ()) -> str:
    def cls(i: int) -> str:
        return ' class="n"' if i < len(numeric) and numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(v)}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _big(value: str, label: str) -> str:
    return f'<div class="big"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'


def _summary(page: _Page, data: Telemetry, directory: Path, name: str | None, running: bool) -> None:
    read = datetime.fromtimestamp(data.now).astimezone().isoformat(timespec="seconds")
    elapsed = data.elapsed
    done = data.done
    rate = done / (elapsed / 3600) if elapsed > 0 else None
    per_hour = "–" if rate is None else f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
    page.add("<h2>Summary</h2>")
    for resource in ("cores", "gpus"):
        if data.capacity(resource) > 0 or resource == "cores":
            page.add(_big(_percent(steady_state_utilization(data, resource)),
                          f"steady-state utilization of {data.capacity(resource)} {resource}"))
    page.add(_big(_percent(overall_utilization(data)), "overall utilization of cores"))
    page.add(_big(per_hour, "tasks done per hour"))
    still_running = sum(i.outcome == "running" for i in data.intervals)
    meta = [
        ("campaign", name or "(unknown)"),
        ("directory", str(directory)),
        ("read at", read),
        ("coordinator", "running" if running else "not running"),
        ("capacity", f"{data.cores} cores, {data.gpus} GPUs" if data.cores or data.gpus else "unknown (never started)"),
        ("elapsed", f"{_duration(elapsed)} (first start to {'now' if still_running else 'last end'})"),
        ("attempts", f"{len(data.intervals)} ran, {still_running} running now"),
    ]
    if data.gpus > 0:
        meta.append(("overall utilization of GPUs", _percent(overall_utilization(data, "gpus"))))
    page.add('<table class="meta">' + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
             + "</table>")
    states = [s.value for s in TaskState if any(s.value in c for c in data.counts.values())]
    rows = [[scale, *(by_state.get(s, 0) for s in states), sum(by_state.values())]
            for scale, by_state in sorted(data.counts.items())]
    rows.append(["all", *(sum(c.get(s, 0) for c in data.counts.values()) for s in states),
                 sum(sum(c.values()) for c in data.counts.values())])
    page.add(_table(["scale", *states, "total"], rows, [False] + [True] * (len(states) + 1)))
    if not running and any(i.outcome == "running" for i in data.intervals):
        page.add('<p class="error">No coordinator is running, yet the store records attempts as running: its '
                 "coordinator stopped without recording their end (a crash?), so they are drawn as running until "
                 f"the read time. <code>mummi-like resume {_e(directory)}</code> settles them.</p>")
    page.add('<p class="note">Steady state: the time between the first and the last start during which tasks '
             "waited in the backend's queue; idle capacity then is the coordinator's or scheduler's loss, "
             "not a lack of work.</p>")


def _timings(page: _Page, data: Telemetry) -> None:
    page.add("<h2>Timings</h2>")
    if not data.timings:
        page.add('<p class="note">No event with a duration was logged.</p>')
        return
    rows = [[kind, len(values), f"{statistics.fmean(values):.3f}", f"{_p95(values):.3f}", f"{max(values):.3f}"]
            for kind, values in sorted(data.timings.items())]
    page.add(_table(["event", "count", "mean (s)", "p95 (s)", "max (s)"], rows, [False, True, True, True, True]))


def _science(page: _Page, store: Store, spec_meta: Any, directory: Path) -> None:
    page.add("<h2>Science</h2>")
    if not spec_meta or "text" not in spec_meta:
        page.add('<p class="note">The store holds no campaign spec, so no plugin was asked for sections.</p>')
        return
    try:
        from mummi_like.spec import load_spec_text

        resolved = load_spec_text(spec_meta["text"], Path(spec_meta.get("source") or directory / "campaign.yaml"),
                                  directory=directory)
    except Exception as error:  # a spec that no longer loads (plugin uninstalled, ...) must not stop the report
        page.add(f'<p class="error">Could not load the campaign spec, so no plugin was asked for sections:</p>'
                 f"<pre>{_e(error)}</pre>")
        return
    collected = collect_sections(CampaignView(store), plugin_owners(resolved))
    if not collected:
        page.add('<p class="note">No plugin of this campaign contributed a section '
                 '(see <code>report_sections</code> on Scale and Policy).</p>')
    for entry in collected:
        if entry.error is not None:
            page.add(f"<h3>{_e(entry.owner)}</h3><p class=\"error\">{_e(entry.error)}</p>")
            continue
        for section in entry.sections:
            page.add(f"<h3>{_e(section.title)}</h3><p class=\"note\">from {_e(entry.owner)}</p>")
            if section.text is not None:
                page.add(f'<p class="plain">{_e(section.text)}</p>')
                page.texts.append(f"{section.title}\n{section.text}")
            if section.html is not None:
                page.add(section.html)
            if section.figure is not None:
                try:
                    page.figure(section.figure, _slug(f"science-{entry.owner}-{section.title}"), alt=section.title)
                except Exception as error:
                    page.add(f'<p class="error">The figure could not be drawn: {_e(error)}</p>')


def _failures(page: _Page, data: Telemetry) -> None:
    page.add("<h2>Failures</h2>")
    if not data.failures:
        page.add('<p class="note">No task failed.</p>')
        return
    rows = []
    for task_id, scale, reason, stderr in data.failures[:FAILURE_LIMIT]:
        tail = "\n".join(tail_lines(stderr, STDERR_LINES))
        output = f"<pre>{_e(tail)}</pre>" if tail else ""
        output += f'<div class="note">{_e(stderr)}</div>' if stderr else ""
        rows.append(f"<tr><td>{_e(task_id)}</td><td>{_e(scale)}</td><td>{_e(reason or '')}</td><td>{output}</td></tr>")
    page.add("<table><thead><tr><th>task</th><th>scale</th><th>reason</th>"
             f"<th>last {STDERR_LINES} lines of stderr</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    if len(data.failures) > FAILURE_LIMIT:
        page.add(f'<p class="note">The first {FAILURE_LIMIT} of {len(data.failures)} failed tasks are listed; '
                 "`mummi-like status --json` lists them all.</p>")


def write_report_files(directory: Path, out: Path | None = None, now: float | None = None) -> tuple[Path, list[Path]]:
    """Write the report and return the HTML path and the PNGs written; see :func:`write_report`."""
    directory = Path(directory).resolve()
    out = directory / REPORT_FOLDER if out is None else Path(out)
    now = time.time() if now is None else now
    with Store.open(directory, readonly=True) as store:
        data = read_telemetry(store, now=now)
        spec_meta = store.get_meta(SPEC_META)
        running = coordinator_running(directory)
        out.mkdir(parents=True, exist_ok=True)
        page = _Page(out)
        name = _campaign_name(spec_meta) if spec_meta else None
        _summary(page, data, directory, name, running)
        # What the campaign found comes first, then how the machine was used: a scientist reads the outcome,
        # an operator scrolls on to utilization and latency.
        _science(page, store, spec_meta, directory)

        t0 = data.first_start
        if t0 is None:
            t0 = data.queue[0][0] if data.queue else data.now
        colors = _colors([i.scale for i in data.intervals] + list(data.counts))
        page.add("<h2>Utilization</h2>")
        if data.intervals:
            page.figure(utilization_figure(data, t0, colors), "utilization",
                        "Busy resources stacked by scale; dashed: capacity; shaded: steady state.")
        else:
            page.add('<p class="note">No task has started yet.</p>')
        page.add("<h2>Tasks over time</h2>")
        if data.intervals:
            figure, caption = gantt_figure(data, t0, colors)
            page.figure(figure, "gantt", caption)
        else:
            page.add('<p class="note">No task has started yet.</p>')
        page.add("<h2>Throughput</h2>")
        if data.completions:
            figure, caption = throughput_figure(data, t0, colors)
            page.figure(figure, "throughput", caption)
        else:
            page.add('<p class="note">No task has completed yet.</p>')
        page.add("<h2>Queue and coordinator latency</h2>")
        if data.queue:
            page.figure(queue_figure(data, t0), "queue", "Tasks handed to the backend and waiting to start.")
        latency = latency_figure(data, t0)
        if latency is not None:
            page.figure(latency, "latency", "Reaction time per loop-stats window: from a backend event to the "
                        "end of that tick's submissions.")
        elif not data.queue:
            page.add('<p class="note">Nothing was queued yet.</p>')
        _timings(page, data)
        _failures(page, data)

    title = f"Campaign report: {name}" if name else "Campaign report"
    document = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>" + "\n".join(page.parts) + "</body></html>\n"
    )
    summary = out / SUMMARY_FILE
    if page.texts:
        atomic_write_text(summary, "\n\n".join(page.texts) + "\n")
    else:
        summary.unlink(missing_ok=True)
    index = out / "index.html"
    atomic_write_text(index, document)  # a browser reloading the page never sees half a file
    return index, page.pngs


def write_report(directory: Path, out: Path | None = None, now: float | None = None) -> Path:
    """Write a campaign's report: PNG figures and a self-contained ``index.html``.

    Parameters
    ----------
    directory
        The campaign directory; its store is opened read-only, so the campaign
        may be running.
    out
        Folder to write into, created if missing; default ``directory/report``.
    now
        The read time (attempts still running end there); default: now.

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    StoreError
        When ``directory`` holds no campaign store.
    """
    return write_report_files(directory, out, now)[0]
