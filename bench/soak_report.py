"""The soak's verdict: counts by action and status, latency and memory figures, the environment it ran in,
the printed summary and the JSON result."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.soak_ledger import Ledger, percentile
from bench.soak_server import Limits

INFERENCE_ACTIONS = ("generate.", "pipeline.", "burst")
CLEAN_EXITS = (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled once it has shut down
HEALTH_SLO_MS = 100.0  # the target for /health while requests run: reported, not asserted


@dataclass
class Watch:
    """What the side tasks measured while the load ran."""

    health_ms: list[float]
    rss_samples: list[tuple[float, float]]


@dataclass
class Run:
    """Everything one soak observed, for the verdict."""

    ledger: Ledger
    watch: Watch
    stats: dict[str, Any]  # /stats once the clients had finished
    rss_mib: dict[str, float | None]
    shutdown: tuple[int | None, float]  # exit status (None: killed), seconds after SIGTERM



def milliseconds(values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    return {
        "count": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": values[-1] if values else None,
    }


def status_by_action(ledger: Ledger) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for outcome in ledger.outcomes:
        key = "cancelled" if outcome.cancelled else str(outcome.status or "transport error")
        row = table.setdefault(outcome.action, {})
        row[key] = row.get(key, 0) + 1
    return dict(sorted(table.items()))


def check_burst(ledger: Ledger, size: int, bound: int) -> dict[str, int]:
    statuses = [o.status for o in ledger.outcomes if o.action == "burst"]
    summary = {"sent": len(statuses), "answered_200": statuses.count(200), "shed_429": statuses.count(429)}
    if statuses and not summary["shed_429"]:
        ledger.violate(
            "burst", f"{size} requests at once against a bound of {bound} were never shed: the bound did not hold"
        )
    return summary


def command_line(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "bench.soak", *argv])


def load_average() -> list[float] | None:
    """The machine's 1/5/15-minute load: how much else ran beside the soak (timings depend on it)."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


def environment_facts(
    ready: dict, limits: Limits, args: argparse.Namespace, load_at_start: list[float] | None
) -> dict[str, Any]:
    import torch

    return {
        "base_model": ready.get("base_model"),
        "device": ready.get("device"),
        "dtype": ready.get("dtype"),
        "cpu_count": os.cpu_count(),
        "load_average_start": load_at_start,
        "load_average_end": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "limits": limits.__dict__,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "seed": args.seed,
        "burst": args.burst or 4 * args.max_concurrent_requests,
        "excluded_poisons": args.exclude,
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def print_summary(result: dict[str, Any]) -> None:
    counts, setup = result["counts"], result["setup"]
    latency, health, rss = result["latency_ms"]["inference_2xx"], result["health_ms"], result["rss_mib"]
    refused = ", ".join(f"{code}: {n}" for code, n in counts["refused_by_code"].items()) or "none"
    failed = ", ".join(f"{kind}: {n}" for kind, n in counts["failed_by_kind"].items()) or "none"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"

    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    load = f"{setup['load_average_start']} -> {setup['load_average_end']}"
    lines = [
        (
            f"soak: {setup['duration_s']:g} s, {setup['concurrency']} clients, seed {setup['seed']}, "
            f"{setup['base_model']} on {setup['device']} ({setup['dtype']}), "
            f"max_concurrent_requests {setup['limits']['max_concurrent_requests']}"
        ),
        f"  requests sent        {counts['sent']}",
        f"  answered 2xx         {counts['answered_2xx']}",
        f"  shed 429             {counts['shed_429']}  "
        f"(burst: {result['burst']['shed_429']} of {result['burst']['sent']})",
        f"  refused 4xx          {counts['refused_4xx']}  ({refused})",
        f"  past deadline 503    {counts['past_deadline_503']}",
        f"  failed               {counts['failed']}  ({failed})",
        (
            f"  cancelled by soak    {counts['cancelled_by_soak']}  "
            f"(server cancelled_rows: {result['server_stats'].get('cancelled_rows')})"
        ),
        f"  latency, 2xx inference  p50 {ms(latency['p50'])} ms  p99 {ms(latency['p99'])} ms  (n={latency['count']})",
        (
            f"  /health latency         p50 {ms(health['p50'])} ms  p99 {ms(health['p99'])} ms  "
            f"max {ms(health['max'])} ms  (n={health['count']}, {health['over_100ms']} over 100 ms)"
        ),
        (
            f"  server RSS              start {mib(rss['start_mib'])} MiB  "
            f"after setup {mib(rss['after_setup_mib'])} MiB  max {mib(rss['max_mib'])} MiB  "
            f"end {mib(rss['end_mib'])} MiB"
        ),
        f"  machine load (1/5/15 min)  {load} on {setup['cpu_count']} CPUs",
        (
            f"  server stopped          exit {result['shutdown']['exit_status']} "
            f"({'clean' if result['shutdown']['exit_status'] in CLEAN_EXITS else 'NOT clean'}) "
            f"in {result['shutdown']['seconds']:.1f} s after SIGTERM"
        ),
        f"  inconsistent answers    {len(result['inconsistencies'])}",
        f"  violations              {result['violation_count']}",
    ]
    if setup["excluded_poisons"]:
        lines.append(f"  left out (partial run)  poisons matching {', '.join(setup['excluded_poisons'])}")
    lines += [f"    - {v['action']}: {v['what']}" for v in result["violations"][:20]]
    if result["violation_count"] > 20:
        lines.append(f"    ... and {result['violation_count'] - 20} more (see the JSON)")
    lines.append("PASSED" if result["passed"] else "FAILED")
    print("\n".join(lines), flush=True)


def first_violations(ledger: Ledger, limit: int = 50) -> list[dict[str, Any]]:
    """At most `limit` violations, and 3 of each (action, first words of what): one defect must not drown the rest."""
    seen: dict[tuple[str, str], int] = {}
    kept: list[dict[str, Any]] = []
    for violation in ledger.violations:
        key = (violation["action"], violation["what"][:40])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 3 and len(kept) < limit:
            kept.append(violation)
    return kept


def report(
    args: argparse.Namespace,
    argv: list[str],
    ready: dict,
    limits: Limits,
    run: Run,
    errors: list[str],
    load_at_start: list[float] | None,
) -> dict[str, Any]:
    """The verdict and every figure, as the JSON result holds them. The burst and the shutdown are judged here."""
    ledger, shutdown = run.ledger, run.shutdown
    burst_summary = check_burst(ledger, args.burst or 4 * args.max_concurrent_requests, limits.max_concurrent_requests)
    if shutdown[0] not in CLEAN_EXITS:
        ledger.violate(
            "shutdown",
            f"after SIGTERM the server ended with {shutdown[0]} in {shutdown[1]:.0f} s "
            "(None: it did not exit and was killed)",
        )
    health = milliseconds(run.watch.health_ms)
    health["over_100ms"] = sum(v > HEALTH_SLO_MS for v in run.watch.health_ms)
    return {
        "command": command_line(argv),
        "note": args.note,
        "setup": environment_facts(ready, limits, args, load_at_start),
        "counts": ledger.counts(),
        "status_by_action": status_by_action(ledger),
        "burst": burst_summary,
        "latency_ms": {
            "inference_2xx": milliseconds(ledger.latencies_ms(INFERENCE_ACTIONS)),
            **{prefix.rstrip("."): milliseconds(ledger.latencies_ms((prefix,))) for prefix in INFERENCE_ACTIONS},
        },
        "health_ms": health,
        "rss_mib": {**run.rss_mib, "samples": run.watch.rss_samples},
        "server_stats": {
            **run.stats.get("engine", {}),
            "admission": run.stats.get("admission"),
            "decode": run.stats.get("decode"),
        },
        "shutdown": {"exit_status": shutdown[0], "seconds": round(shutdown[1], 2)},
        "server_log_errors": errors,
        "inconsistencies": ledger.inconsistencies[:20],
        "violations": first_violations(ledger),
        "violation_count": len(ledger.violations),
        "passed": not ledger.violations,
    }
