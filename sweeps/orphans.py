"""Release the placement groups of Train runs whose controller died with a stopped Tune trial.

When the early-stopping scheduler STOPs a trial, Tune ends the trial's actor, and with it the Ray Train
controller it owns; the controller's worker-group placement group is job-scoped, so it keeps its CPUs/GPUs
until the sweep driver exits. Ray Train's own ``PlacementGroupCleaner`` asks the State API (the dashboard's
HTTP server) whether the controller is alive; arx starts local Ray without the dashboard, and on a machine with
several local Ray clusters the State API cannot even pick the address, so every pruned trial would leak its
workers' resources and the next trials would wait forever (measured: the sweep hung after the first prunings).

This callback asks the GCS directly (the placement-group table: ``creator_actor_dead``) once a second and
removes every non-detached placement group whose creating *actor* is dead. The Tune trial groups are created by
the driver (no creator actor) and are never touched; a live controller's group is never touched.
"""
from __future__ import annotations

import time

import ray
from ray import tune


def actor_groups(dead_only: bool = True) -> list[str]:
    """Hex ids of this job's live, non-detached placement groups created by an actor (a Train controller);
    ``dead_only``: only those whose creating actor is dead (orphans)."""
    from ray.core.generated import gcs_pb2

    from sweeps.compat import placement_group_table  # Ray 2.60: the GCS table, no dashboard needed

    nil, out = ray.ActorID.nil().binary(), []  # a group made by a driver has the nil (all 0xff) creator actor
    job = ray.get_runtime_context().get_job_id()
    for raw in placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (pg.creator_actor_id and pg.creator_actor_id != nil and not pg.is_detached
                and pg.creator_job_id.hex() == job and (pg.creator_actor_dead or not dead_only)
                and pg.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            out.append(pg.placement_group_id.hex())
    return out


def orphaned_groups() -> list[str]:
    """Hex ids of this job's live placement groups created by an actor that is now dead (not detached)."""
    return actor_groups(dead_only=True)


def release_orphaned_groups() -> int:
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    ids = orphaned_groups()
    for pg_id in ids:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
    return len(ids)


class ReleaseOrphans(tune.Callback):
    """Tune callback: ``release_orphaned_groups`` at most every ``period_s`` seconds of the sweep loop."""

    def __init__(self, period_s: float = 1.0, final_wait_s: float = 30.0):
        self.period_s, self.final_wait_s, self._last = period_s, final_wait_s, 0.0

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last >= self.period_s:
            self._last = now
            release_orphaned_groups()

    def on_experiment_end(self, trials, **info):
        """Every trial has ended: wait (bounded) for the last stopped controllers to die and release their groups,
        so a driver that lives on (a notebook, a test session) gets its CPUs back."""
        deadline = time.monotonic() + self.final_wait_s
        while actor_groups(dead_only=False) and time.monotonic() < deadline:
            release_orphaned_groups()
            time.sleep(0.2)
        release_orphaned_groups()
