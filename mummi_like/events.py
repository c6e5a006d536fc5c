"""Kinds of the campaign-level events the coordinator writes to the store's event log.

Writers (the loop) and readers (telemetry, reports) name them from here, so a
renamed event cannot silently empty a report. Plugins may log events of their
own kinds; any event with a numeric ``duration`` field is summarised in reports.
"""

COORDINATOR_STARTED = "coordinator-started"
"""A coordinator took over the campaign; carries the backend's capacity (nodes, cores, gpus)."""
COORDINATOR_STOPPED = "coordinator-stopped"
"""The coordinator left the loop; carries why it stopped early (``reason``), if it did."""
CAMPAIGN_CREATED = "campaign-created"
"""The campaign's initial tasks were recorded."""
LOOP_STATS = "loop-stats"
"""A window of the loop's reaction times (see :mod:`mummi_like.campaign.stats`)."""
CANCEL_REQUESTED = "cancel-requested"
"""Tasks were canceled on request."""
BUDGET_EXHAUSTED = "budget-exhausted"
"""Follow-up tasks were dropped because ``budgets.max_tasks`` was reached."""
FRAMES_REJECTED = "frames-rejected"
"""Streamed frames a coupling dropped (non-finite features); carries their ids and the reason."""
COUPLING_FAILED = "coupling-failed"
"""A coupling could not go on (its selector refused the features of its streams); carries the ``coupling``, the
``error`` and, where the selector raised, its ``traceback``. The campaign stops, resumable."""
SELECTOR_RETRAINED = "selector-retrained"
"""A coupling's selector loaded a newly trained model; carries the training's ``duration``."""
STAGE_OPENED = "stage-opened"
"""A scale's ``on_upstream_done`` was called (its upstream scales had finished); carries the ``scale`` and the
number of ``tasks`` it made. Committed with those tasks, so resume knows the stage is open."""
STAGE_FAILED = "stage-failed"
"""A scale's ``on_upstream_done`` raised; carries the ``scale`` and the ``error``. The campaign stops, resumable."""
UTILIZATION = "utilization"
"""The campaign's utilization as its coordinator stopped (``steady_state``, ``overall``, ``cores``, ``gpus``):
computed once from the whole history, so that `status` can show it without reading that history."""
