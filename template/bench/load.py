"""GET /items/{id} at rising concurrency, with wrk (closed loop: each connection sends its next
request when the previous answer arrives). A Lua script spreads the requests over the paths
given (one per item id), counts the 503 answers and prints wrk's own latency percentiles as
JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """
local paths = PATHS
local next_path = 0
local threads = {}
refused = 0  -- 503 answers, counted in each thread's own Lua state
setup = function(thread)
  table.insert(threads, thread)
end
local method, body = METHOD, BODY
local headers = body and {["Content-Type"] = "application/json"} or nil
request = function()
  next_path = next_path % #paths + 1
  return wrk.format(method, paths[next_path], headers, body)
end
response = function(status, headers, body)
  if status == 503 then refused = refused + 1 end
end
done = function(summary, latency, requests)
  local errors = summary.errors
  local refusals = 0
  for _, thread in ipairs(threads) do refusals = refusals + thread:get("refused") end
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d,'
    .. ' "non_2xx": %d, "refused": %d, "socket_errors": %d, "timeouts": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.status, refusals, errors.connect + errors.read + errors.write,
    errors.timeout))
end
"""


@dataclass(frozen=True)
class LoadLevel:
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    refused: int  # 503 answers (also counted in non_2xx)
    socket_errors: int

    @property
    def rps(self) -> float:
        """Answers per second, whatever their status."""
        return self.requests / self.seconds

    @property
    def refused_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0

    @property
    def ok_rps(self) -> float:
        """2xx answers per second."""
        return (self.requests - self.non_2xx) / self.seconds


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or brew install wrk)")
    return wrk


def run_load(
    url: str,
    paths: Sequence[str],
    levels: list[int],
    duration: float,
    warmup: float,
    cpu: int | None,
    progress: Callable[[str], None],
    method: str = "GET",
    body: str | None = None,
) -> list[LoadLevel]:
    """wrk at each concurrency of `levels`; a `body` is sent as JSON with every request."""
    wrk = require_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        script = Path(scratch) / "items.lua"
        table = ",".join(json.dumps(path) for path in paths)  # a Lua string is a JSON one here
        code = SCRIPT.replace("PATHS", "{" + table + "}").replace("METHOD", json.dumps(method))
        script.write_text(code.replace("BODY", json.dumps(body) if body is not None else "nil"))
        if warmup > 0:
            progress(f"load: warming up for {warmup:g} s at {max(levels)} connections")
            _wrk(wrk, script, url, max(levels), warmup, cpu)
        results = []
        for concurrency in levels:
            progress(f"load: {concurrency} connections for {duration:g} s ...")
            level = _wrk(wrk, script, url, concurrency, duration, cpu)
            progress(
                f"load: x{concurrency:<4} {level.ok_rps:8.0f} req/s  p50 {level.p50_ms:7.2f} ms"
                f"  p99 {level.p99_ms:7.2f} ms"
                + (f"  503 {100 * level.refused_share:.1f} %" if level.refused else "")
                + (f"  non-2xx {level.non_2xx}" if level.non_2xx else "")
                + (f"  socket errors {level.socket_errors}" if level.socket_errors else "")
            )
            results.append(level)
    return results


def _wrk(
    wrk: str, script: Path, url: str, connections: int, seconds: float, cpu: int | None
) -> LoadLevel:
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    command += ["-s", str(script), url]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    data = json.loads(lines[-1].removeprefix("RESULT "))
    return LoadLevel(
        concurrency=connections,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=data["non_2xx"],
        refused=data["refused"],
        socket_errors=data["socket_errors"] + data["timeouts"],
    )
