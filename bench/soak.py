"""Soak: the real server, on loopback, under a mixed and hostile load for a bounded time.

Runs `deltaserve serve` from this checkout as a subprocess (the embedded SmolLM2-135M unless --base-model
names another) with a temporary adapter store, uploads adapters of every kind made by peft on the model's
own shapes, and drives it with well-formed requests (every kind, the base model, greedy and seeded
sampling, `texts` lists, pipelines), uploads, replacements and deletes of adapters while requests for them
run, cancellations, oversized and poisoned requests, broken adapters, and a burst past the admission bound.
A separate poller times /health throughout; the server's RSS is sampled.

It fails (exit status 1) when anything was lost: a request without a complete answer or a clean, documented
refusal, a 2xx whose body is not valid, a 500, a transport error other than the cancellations it made
itself, requests still held by the server after every client finished, or a server that is not healthy at
the end or does not stop on SIGTERM. Timings are reported, never asserted.

    python -m bench.soak --duration 120 --concurrency 8 --out bench/results/soak-smollm2-135m-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.soak_adapters import SoakAdapters, build_adapters
from bench.soak_churn import Churn, named_pipeline_steps, upload
from bench.soak_client import NAMED_PIPELINE, Catalogue, Soak
from bench.soak_hostile import poison_sweep
from bench.soak_ledger import Expect, Ledger
from bench.soak_report import Run, Watch, load_average, print_summary, report
from bench.soak_server import (
    Limits,
    free_port,
    log_errors,
    rss_mib,
    server_environment,
    start_server,
    stop_server,
    wait_ready,
)
from bench.soak_traffic import burst, generate, health_poller, memory_sampler, probes, traffic_worker
from bench.soak_validators import pipeline_result, record_version

DRAIN_TIMEOUT_S = 30.0
SHUTDOWN_REQUESTS, SHUTDOWN_NEW_TOKENS = 3, 24
PROMPT = "What is the capital of France?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="clients sending the mixed traffic at once (default 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the request mix and the adapters' weights")
    parser.add_argument(
        "--max-concurrent-requests", type=int, default=16, help="the server's admission bound for the run (default 16)"
    )
    parser.add_argument("--burst", type=int, default=None, help="requests sent at once mid-run (default 4x the bound)")
    parser.add_argument("--base-model", default=None, help="DELTASERVE_BASE_MODEL (default: the embedded SmolLM2-135M)")
    parser.add_argument("--device", default="auto", help="DELTASERVE_DEVICE (default auto)")
    parser.add_argument("--health-interval", type=float, default=0.1, help="seconds between /health probes")
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="seconds the server may take to load")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="WORD",
        help="leave out the poisoned requests whose label contains WORD (a known defect while it is "
        "fixed); the result records it and a run with exclusions is partial",
    )
    parser.add_argument(
        "--note", default="", help="a remark kept in the result, e.g. what else the machine was running"
    )
    parser.add_argument(
        "--log-requests",
        type=Path,
        default=None,
        help="also write every request's outcome here, one JSON object a line (to trace a violation)",
    )
    return parser.parse_args(argv)


# -- setting the server up -----------------------------------------------------------------------------------


async def install(soak: Soak, adapters: SoakAdapters) -> None:
    """Upload every adapter through the API (created: 201, version 1) and store the named pipeline."""
    for kind, files in adapters.served.items():
        name = f"soak-{kind}"
        if (
            await upload(soak, "setup.upload", name, files, Expect.of(201, validate=record_version(name, 1)))
            is not None
        ):
            soak.catalogue.stable.append(name)
    for kind, (files, _) in adapters.variants.items():
        name = f"soak-{kind}"
        if (
            await upload(soak, "setup.upload", name, files, Expect.of(201, validate=record_version(name, 1)))
            is not None
        ):
            soak.catalogue.swapped.append(name)
            soak.catalogue.versions[name] = 1
    steps = named_pipeline_steps(soak.catalogue.stable)
    if (
        await soak.send(
            "setup.pipeline",
            "PUT",
            f"/pipelines/{NAMED_PIPELINE}",
            Expect.of(201),
            json={"description": "soak", "steps": steps},
        )
        is not None
    ):
        soak.catalogue.pipelines[NAMED_PIPELINE] = [step["name"] for step in steps]


async def adopt_demo(soak: Soak) -> None:
    """The demo adapters and pipelines the server installed itself (default model only) join the mix."""
    ours = set(soak.catalogue.stable) | set(soak.catalogue.swapped)
    listed = await soak.client.get("/adapters")
    soak.catalogue.stable += [r["name"] for r in listed.json()["adapters"] if r["name"] not in ours]
    pipelines = await soak.client.get("/pipelines")
    for pipeline in pipelines.json()["pipelines"]:
        soak.catalogue.pipelines.setdefault(pipeline["name"], [step["name"] for step in pipeline["steps"]])


# -- the run ----------------------------------------------------------------------------------------------------


async def drive(soak: Soak, adapters: SoakAdapters, args: argparse.Namespace, url: str, pid: int) -> Watch:
    """The load itself: traffic workers, the churn and the burst, with /health and memory watched beside."""
    stop = asyncio.Event()
    started = time.monotonic()
    health = asyncio.ensure_future(health_poller(url, soak.ledger, stop, args.health_interval))
    memory = asyncio.ensure_future(memory_sampler(lambda: rss_mib(pid), stop, 1.0, started))
    burst_size = args.burst or 4 * args.max_concurrent_requests
    load = [traffic_worker(soak, random.Random(f"{args.seed}-{i}")) for i in range(args.concurrency)]
    load += [
        Churn(soak, adapters, random.Random(f"{args.seed}-churn")).run(),
        burst(soak, burst_size, started + args.duration / 2),
        poison_sweep(soak),
    ]
    try:
        await asyncio.gather(*load)
    finally:
        stop.set()
    return Watch(await health, await memory)


async def drained(soak: Soak) -> dict[str, Any]:
    """/stats once every client has finished: nothing may still be admitted, queued or running (a request
    the server still holds is a lost one). Cancelled rows take a token boundary to go, so wait a little."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        response = await soak.send("final.stats", "GET", "/stats", Expect.of(200))
        if response is None:
            return {}
        stats = response.json()
        held = {
            "admitted_requests": stats["admission"]["requests"],
            "declared_tokens": stats["admission"]["tokens"],
            "waiting_rows": stats["queue"]["waiting_rows"],
            "running_rows": stats["queue"]["running_rows"],
        }
        if not any(held.values()):
            return stats
        if time.monotonic() > deadline:
            soak.ledger.violate(
                "drain", f"{DRAIN_TIMEOUT_S:.0f} s after every client finished, the server still holds {held}"
            )
            return stats
        await asyncio.sleep(0.25)


async def final_checks(soak: Soak) -> None:
    """Still healthy and ready, still correct: every probe gives the answer it gave during the run, and
    requests of every kind are still answered."""
    await soak.send("final.health", "GET", "/health", Expect.of(200))
    await soak.send("final.ready", "GET", "/ready", Expect.of(200))
    # Together, as they ran during the load, but within the admission bound: nothing may be shed now.
    within_bound = asyncio.Semaphore(soak.limits.max_concurrent_requests)

    async def probe(body: dict[str, Any]) -> None:
        async with within_bound:
            response = await soak.send("final.probe", "POST", "/generate", Expect.of(200), json=body)
        if response is not None and soak.compare_answers:
            soak.ledger.compare(body, response.json()["text"])

    async def pipeline(name: str, steps: list[str]) -> None:
        async with within_bound:
            await soak.send(
                "final.pipeline",
                "POST",
                f"/pipelines/{name}",
                Expect.of(200, validate=pipeline_result(steps)),
                json={"text": PROMPT},
            )

    await asyncio.gather(
        *(probe(body) for body in probes(soak.catalogue)),
        *(pipeline(name, steps) for name, steps in soak.catalogue.pipelines.items()),
    )


async def shutdown_under_load(soak: Soak, process: subprocess.Popen, grace_s: float) -> tuple[int | None, float]:
    """SIGTERM while requests run: the server must finish them (README: running requests get
    DELTASERVE_SHUTDOWN_GRACE_S) and then exit; a request cut off here is a lost one."""
    in_flight = [
        asyncio.ensure_future(generate(soak, "shutdown.in_flight", None, PROMPT, SHUTDOWN_NEW_TOKENS))
        for _ in range(SHUTDOWN_REQUESTS)
    ]
    deadline = time.monotonic() + 30
    while (await soak.client.get("/stats")).json()["admission"]["requests"] < SHUTDOWN_REQUESTS:
        if time.monotonic() > deadline or all(task.done() for task in in_flight):
            break
        await asyncio.sleep(0.05)
    shutdown = await asyncio.to_thread(stop_server, process, grace_s)
    await asyncio.gather(*in_flight)
    return shutdown


async def has_chat_template(client: httpx.AsyncClient, base_model: str) -> bool:
    """Whether chat requests can be served (a model without a chat template refuses them with 422)."""
    body = {"model": base_model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1}
    return (await client.post("/v1/chat/completions", json=body)).status_code != 422


async def soak_server(
    args: argparse.Namespace, url: str, process: subprocess.Popen, adapters: SoakAdapters, ready: dict, limits: Limits
) -> Run:
    ledger = Ledger()
    pid = process.pid
    burst_size = args.burst or 4 * args.max_concurrent_requests
    # Room for the burst on top of the traffic; idle connections are dropped before the server's keep-alive
    # (5 s) would close them under a request.
    pool = httpx.Limits(max_connections=burst_size + args.concurrency + 16, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=url, timeout=limits.request_timeout_s + 30, limits=pool) as client:
        # Reproducibility is checked in float32 only: in bf16 a padded row may part from itself (README).
        soak = Soak(
            client,
            ledger,
            limits,
            Catalogue([], [], {}, base_model=ready["base_model"]),
            deadline=float("inf"),
            compare_answers=ready.get("dtype") == "float32",
            excluded=tuple(args.exclude),
        )
        rss = {"start_mib": rss_mib(pid)}
        await install(soak, adapters)
        await adopt_demo(soak)
        soak.catalogue.chat_template = await has_chat_template(client, ready["base_model"])
        rss["after_setup_mib"] = rss_mib(pid)
        soak.deadline = time.monotonic() + args.duration
        watch = await drive(soak, adapters, args, url, pid)
        stats = await drained(soak)
        await final_checks(soak)
        rss["end_mib"] = rss_mib(pid)
        rss["max_mib"] = max(
            [s for _, s in watch.rss_samples] + [v for v in rss.values() if v is not None], default=None
        )
        if process.poll() is not None:
            ledger.violate("server", f"the server process exited during the soak with status {process.returncode}")
        shutdown = await shutdown_under_load(soak, process, limits.shutdown_grace_s + 15)
    return Run(ledger, watch, stats, rss, shutdown)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    limits = replace(Limits(), max_concurrent_requests=args.max_concurrent_requests)
    load_at_start = load_average()
    with tempfile.TemporaryDirectory(prefix="deltaserve-soak-") as workdir:
        root = Path(workdir)
        port, log_path = free_port(), root / "server.log"
        url = f"http://127.0.0.1:{port}"
        process = start_server(server_environment(limits, root / "store", args.base_model, args.device), port, log_path)
        try:
            print(f"server starting on {url} (pid {process.pid}); building adapters meanwhile", flush=True)
            adapters = build_adapters(args.base_model, root / "adapters", args.seed)
            ready = wait_ready(url, process, log_path, args.ready_timeout)
            print(f"server ready: {ready}; soaking for {args.duration:g} s", flush=True)
            run = asyncio.run(soak_server(args, url, process, adapters, ready, limits))
        finally:
            if process.poll() is None:  # the soak failed before its own shutdown: never leave the server behind
                stop_server(process, limits.shutdown_grace_s + 15)
        result = report(args, argv, ready, limits, run, log_errors(log_path), load_at_start)
    if args.log_requests:
        args.log_requests.write_text("".join(json.dumps(row) + "\n" for row in run.ledger.outcome_rows()))
    print_summary(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
