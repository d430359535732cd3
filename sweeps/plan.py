"""Resource plan of a sweep: how many trials fit at once, checked before anything is launched.

A Train run starts only when all its workers' resources are free, and oversubscribed or infeasible worker
requests hang (DESIGN.md), so the plan derives ``max_concurrent_trials`` from the cluster and refuses a
plan whose single trial cannot fit. A Ray Train trial's driver holds the custom ``trial_slot`` resource, not a CPU;
a 1-worker trial runs in its Tune trial process and holds its worker's CPU/GPU only (``trainables/inprocess.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from trainables.config import ResourcesConfig
from trainables.errors import ArxError


@dataclass(frozen=True)
class ResourcePlan:
    per_trial_cpu: float
    per_trial_gpu: float
    cluster_cpu: float
    cluster_gpu: float
    concurrent: int
    num_samples: int
    in_process: bool = False   # 1-worker trials run in their Tune trial process: no separate driver, no slot

    def lines(self) -> list[str]:
        driver = " (in its Tune trial process)" if self.in_process else " (+ 1 trial_slot for its driver)"
        return [
            f"each trial: {self.per_trial_cpu:g} CPU, {self.per_trial_gpu:g} GPU{driver}",
            f"cluster: {self.cluster_cpu:g} CPU, {self.cluster_gpu:g} GPU",
            f"{self.num_samples} trials, at most {self.concurrent} at a time",
        ]


def make_plan(res: ResourcesConfig, cluster: dict, num_samples: int, max_concurrent: int | None,
              strict: bool = True) -> ResourcePlan:
    """``strict``: refuse plans that do not fit now (local Ray); else trust an autoscaler."""
    cpu = res.num_workers * res.cpus_per_worker
    gpu = res.num_workers * res.gpus_per_worker if res.use_gpu else 0.0
    have_cpu, have_gpu = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    fits = [math.floor(have_cpu / cpu + 1e-9)]
    if gpu:
        fits.append(math.floor(have_gpu / gpu + 1e-9))
    fit = min(fits)
    if fit < 1 and strict:
        need = f"{cpu:g} CPU" + (f" and {gpu:g} GPU" if gpu else "")
        raise ArxError(f"resources: one trial needs {need} ({res.num_workers} worker(s)) but the cluster has "
                       f"{have_cpu:g} CPU and {have_gpu:g} GPU; lower resources.num_workers / cpus_per_worker "
                       f"or use a bigger cluster")
    if strict:
        concurrent = min(fit, max_concurrent or num_samples, num_samples)
    else:  # an autoscaling cluster may grow: trust max_concurrent, else what fits now (at least 1)
        concurrent = min(max_concurrent or max(fit, 1), num_samples)
    from trainables.session import trial_path

    return ResourcePlan(cpu, gpu, have_cpu, have_gpu, concurrent, num_samples,
                        in_process=trial_path(res.num_workers) == "process")
