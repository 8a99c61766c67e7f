"""How many CPUs this process may really use, for WEB_CONCURRENCY=auto.

`os.cpu_count()` is the host's core count: in a container limited to 2 CPUs on a 64-core
host it says 64, and 64 workers would each open a pool. The limit that matters is the CPU
quota of the process's own cgroup and of every cgroup above it (the tightest wins): cgroup
v2's `cpu.max`, or cgroup v1's CFS quota and period; else the CPU affinity mask.

The process's cgroup is the one /proc/self/cgroup names, found under the cgroup mount. A
systemd unit with CPUQuota= sits deep in the host's hierarchy (the `0::/system.slice/...`
line). In a container with its own cgroup namespace the line says `0::/` and the mount's root
is the container's cgroup; without one, the line may name a path of the host's that the
container's mount does not have: the walk then starts from the deepest part that exists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
# Where cgroup v1 mounts the cpu controller: alone, or joined with cpuacct (often both, linked).
V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """CPUs allowed by the tightest quota from this process's cgroup up; None when there is none."""
    v2_path, v1_path = own_cgroup_paths(self_cgroup)
    quotas = [v2_quota(level) for level in walk_up(root, v2_path)]
    v1_mount = next((root / name for name in V1_CPU_MOUNTS if (root / name).is_dir()), None)
    if v1_mount is not None:
        quotas += [v1_quota(level) for level in walk_up(v1_mount, v1_path)]
    return min((quota for quota in quotas if quota is not None), default=None)


def own_cgroup_paths(self_cgroup: Path) -> tuple[str, str]:
    """The process's cgroup in the v2 hierarchy (`0::/path`) and in v1's cpu controller.

    Either is "/" when /proc/self/cgroup does not name one (no such hierarchy, or no file).
    """
    v2 = v1 = "/"
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return v2, v1
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            v2 = path or "/"
        elif "cpu" in controllers.split(","):
            v1 = path or "/"
    return v2, v1


def walk_up(mount: Path, cgroup: str) -> Iterator[Path]:
    """The cgroup's folder under `mount` and each one above it, up to and including `mount`.

    A path the mount does not have (a host path seen from inside a container) is shortened
    from its end until it exists; one that climbs out of the namespace (`/..`) starts at the
    mount's root.
    """
    parts = PurePosixPath(cgroup).parts[1:]
    if ".." in parts:
        parts = ()
    while parts and not mount.joinpath(*parts).is_dir():
        parts = parts[:-1]
    while parts:
        yield mount.joinpath(*parts)
        parts = parts[:-1]
    yield mount


def v2_quota(cgroup: Path) -> float | None:
    """CPUs from a v2 cgroup's `cpu.max` ("150000 100000": 1.5); None for "max" or none."""
    try:
        quota, _, period = (cgroup / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100_000)
    except (OSError, ValueError, ZeroDivisionError):  # no file at this level, or unreadable
        return None


def v1_quota(cgroup: Path) -> float | None:
    """CPUs from a v1 cgroup's CFS quota and period; None for -1 (unlimited) or none."""
    try:
        quota_us = int((cgroup / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError, ZeroDivisionError):
        return None


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (taskset, cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    """Whole CPUs available: the quota rounded up, capped by the affinity mask; at least 1."""
    affinity = affinity_cpus()
    quota = cgroup_cpu_quota(root, self_cgroup)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))
