"""How many CPUs this process may really use, for WEB_CONCURRENCY=auto.

`os.cpu_count()` is the host's core count: in a container limited to 2 CPUs
on a 64-core host it says 64, and 64 workers would each open a pool. The
limit that matters is the container's CPU quota (cgroup v2 `cpu.max`, or
cgroup v1's CFS quota and period), else the CPU affinity mask.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup's quota, or None when there is no quota."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100_000)
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        quota_file, period_file = v1 / "cpu.cfs_quota_us", v1 / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota_us = int(quota_file.read_text())
            if quota_us <= 0:  # -1: unlimited
                return None
            return quota_us / int(period_file.read_text())
    return None


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (taskset, cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs available: the quota rounded up, capped by the affinity mask; at least 1."""
    affinity = affinity_cpus()
    quota = cgroup_cpu_quota(root)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))
