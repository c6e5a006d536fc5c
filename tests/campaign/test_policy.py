"""The default `dag` policy: per-scale max_in_flight and fixed shares of the backend's cores."""

from __future__ import annotations

from collections import deque

import pytest
from pydantic import ValidationError

from mummi_like.backends.base import Capacity
from mummi_like.campaign.policy import DagConfig, DependencyPolicy, Load
from mummi_like.tasks import TaskSpec


def task(task_id: str, cores: int = 1) -> TaskSpec:
    return TaskSpec(id=task_id, payload={"kind": "executable", "argv": ["true"]}, workdir=f"t/{task_id}",
                    resources={"cores": cores}, labels={"scale": task_id.split(".")[0]})


def queues(**counts: int) -> dict[str, deque[TaskSpec]]:
    return {scale: deque(task(f"{scale}.{i}") for i in range(n)) for scale, n in counts.items()}


def policy(shares: dict[str, float] | None = None, limits: dict[str, int | None] | None = None,
           cores: int = 8) -> DependencyPolicy:
    chosen = DependencyPolicy(DagConfig(shares=shares or {}), limits or {})
    chosen.bind(Capacity(nodes=1, cores_per_node=cores))
    return chosen


def test_shares_cap_the_cores_a_scale_holds() -> None:
    ready = queues(coarse=10, fine=10)
    admitted = policy({"coarse": 0.75, "fine": 0.25}).admit(ready, {}, limit=100)
    assert sum(t.scale == "coarse" for t in admitted) == 6 and sum(t.scale == "fine" for t in admitted) == 2
    assert len(ready["coarse"]) == 4 and len(ready["fine"]) == 8


def test_shares_count_what_is_already_in_flight_and_scales_alternate() -> None:
    ready = queues(coarse=10, other=3)
    admitted = policy({"coarse": 0.5}).admit(ready, {"coarse": Load(tasks=3, cores=3)}, limit=100)
    assert [t.id for t in admitted] == ["coarse.0", "other.0", "other.1", "other.2"]


def test_a_task_larger_than_its_share_still_runs_alone() -> None:
    ready = {"fine": deque([task("fine.0", cores=4), task("fine.1", cores=4)])}
    chosen = policy({"fine": 0.25})
    assert [t.id for t in chosen.admit(ready, {}, limit=10)] == ["fine.0"]
    assert chosen.admit(ready, {"fine": Load(1, 4)}, limit=10) == []


def test_max_in_flight_and_limit_still_apply_and_shares_can_be_reallocated() -> None:
    chosen = policy(limits={"coarse": 2})
    assert len(chosen.admit(queues(coarse=5), {}, limit=100)) == 2
    assert len(chosen.admit(queues(other=5), {}, limit=3)) == 3
    chosen.set_shares({"other": 0.25})
    assert len(chosen.admit(queues(other=5), {}, limit=100)) == 2
    with pytest.raises(ValidationError, match=r"shares must lie in \(0, 1\]"):
        chosen.set_shares({"other": 1.5})
