"""Scale-out on paper: R replicas, thousands of adapters of Zipf popularity, each replica keeping at most K compiled
(LRU, as the adapter cache and Serve's multiplexing both do). Random routing against adapter-affinity routing.

Affinity is modelled on Serve's multiplexed routing: a request goes to the least busy replica that has its
adapter resident, unless every such replica is at its concurrency limit; a request for an adapter resident
nowhere goes to a replica with the fewest resident adapters (all are full in steady state: any of them). Requests
arrive as a Poisson stream and each holds its replica for an exponential service time. No GPU, no Ray: only the
counting. Measured after a warm-up of the first fifth of the requests.

    python -m bench.scaleout_sim --out bench/results/scaleout-sim.json

With `--pipelines` it compares the two ways a replica set can run a three-step pipeline: whole on the replica its
first adapter prefers (what the router does), or each step routed by its own adapter (one more router-to-replica
hop per step). Half the arrivals run one of a few hundred named pipelines (Zipf popular, each three adapters drawn
from the same Zipf), the rest are single requests. What it prints per pipeline run: steps that found their
adapter resident, the cold loads that cost, and the hops; then the hop cost at which the two designs break even,
given the measured cost of a cold load.

    python -m bench.scaleout_sim --pipelines --out bench/results/scaleout-sim-pipelines.json
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import random
import statistics
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    adapters: int = 5000
    zipf_s: float = 1.1
    utilization: float = 0.6  # offered load as a share of all replicas' slots: rate = u * slots * R / service_s
    requests: int = 60000
    service_s: float = 0.5  # mean time a request holds a replica slot
    slots: int = 64  # concurrent requests per replica (max_ongoing_requests)
    pipelines: int = 300  # named pipeline definitions (with --pipelines)
    pipeline_share: float = 0.5  # share of arrivals that run a pipeline (with --pipelines)
    steps: int = 3


@dataclass
class Outcome:
    routing: str
    replicas: int
    max_resident: int
    rate: float  # requests per second offered to all replicas
    hit_rate: float  # requests whose adapter was already resident where they ran
    cold_loads_per_s: float  # all replicas together
    cold_loads_per_replica_s: float
    skew: float  # busiest replica's requests / the mean
    copies: float  # replicas holding a resident adapter, on average


class Replica:
    def __init__(self, max_resident: int):
        self.max_resident = max_resident
        self.resident: OrderedDict[int, None] = OrderedDict()
        self.busy = 0
        self.served = 0

    def run(self, adapter: int) -> bool:
        """Serve one request; True when its adapter was resident (a hit), else it is loaded (LRU out)."""
        self.served += 1
        hit = adapter in self.resident
        if hit:
            self.resident.move_to_end(adapter)
        else:
            self.resident[adapter] = None
            if len(self.resident) > self.max_resident:
                self.resident.popitem(last=False)
        return hit


def zipf_sampler(workload: Workload, rng: random.Random):
    weights = [1.0 / (rank ** workload.zipf_s) for rank in range(1, workload.adapters + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return lambda: bisect.bisect_left(cumulative, rng.random() * total)


class Fleet:
    """R replicas, where each adapter is resident, and the requests holding each replica's slots."""

    def __init__(self, workload: Workload, replicas: int, max_resident: int, routing: str, rng: random.Random):
        self.workload, self.routing, self.rng = workload, routing, rng
        self.replicas = [Replica(max_resident) for _ in range(replicas)]
        self.holders: dict[int, set[int]] = {}  # adapter -> replicas where it is resident
        self.finishing: list[tuple[float, int]] = []

    def advance(self, now: float) -> None:
        while self.finishing and self.finishing[0][0] <= now:
            self.replicas[heapq.heappop(self.finishing)[1]].busy -= 1

    def choose(self, adapter: int) -> int:
        if self.routing == "random":
            return self.rng.randrange(len(self.replicas))
        warm = [r for r in self.holders.get(adapter, ()) if self.replicas[r].busy < self.workload.slots]
        if warm:
            return min(warm, key=lambda r: self.replicas[r].busy)
        # Nowhere warm (or every holder full): the fewest resident, then the least busy of two.
        fewest = min(len(replica.resident) for replica in self.replicas)
        candidates = [r for r, replica in enumerate(self.replicas) if len(replica.resident) == fewest]
        return min(self.rng.sample(candidates, min(2, len(candidates))), key=lambda r: self.replicas[r].busy)

    def run(self, chosen: int, adapter: int) -> bool:
        """One step of `adapter` on replica `chosen`: True when the adapter was resident there."""
        replica = self.replicas[chosen]
        before = set(replica.resident)
        hit = replica.run(adapter)
        for gone in before - set(replica.resident):
            self.holders[gone].discard(chosen)
        self.holders.setdefault(adapter, set()).add(chosen)
        return hit

    def hold(self, chosen: int, now: float, service_s: float) -> None:
        self.replicas[chosen].busy += 1
        heapq.heappush(self.finishing, (now + service_s, chosen))

    def outcome(self, max_resident: int, rate: float, hits: int, measured: int, loads: int, seconds: float) -> Outcome:
        served = [replica.served for replica in self.replicas]
        resident_copies = [len(h) for h in self.holders.values() if h]
        return Outcome(
            routing=self.routing, replicas=len(self.replicas), max_resident=max_resident, rate=rate,
            hit_rate=round(hits / measured, 4),
            cold_loads_per_s=round(loads / seconds, 1),
            cold_loads_per_replica_s=round(loads / seconds / len(self.replicas), 1),
            skew=round(max(served) / statistics.mean(served), 3),
            copies=round(statistics.mean(resident_copies), 2),
        )


def simulate(workload: Workload, replicas: int, max_resident: int, routing: str, seed: int = 0) -> Outcome:
    rng = random.Random(seed)
    sample = zipf_sampler(workload, rng)
    fleet = Fleet(workload, replicas, max_resident, routing, rng)
    rate = workload.utilization * workload.slots * replicas / workload.service_s
    now, hits, loads, measured = 0.0, 0, 0, 0
    warm_up = workload.requests // 5
    start_time = 0.0
    for index in range(workload.requests):
        now += rng.expovariate(rate)
        fleet.advance(now)
        adapter = sample()
        chosen = fleet.choose(adapter)
        hit = fleet.run(chosen, adapter)
        fleet.hold(chosen, now, rng.expovariate(1 / workload.service_s))
        if index == warm_up:
            start_time, hits, loads = now, 0, 0
            for r in fleet.replicas:
                r.served = 0
        if index >= warm_up:
            measured += 1
            hits += hit
            loads += not hit
    return fleet.outcome(max_resident, rate, hits, measured, loads, now - start_time)


@dataclass
class PipelineOutcome:
    placement: str  # "whole": every step where the first adapter is preferred; "per_step": each step by its own
    replicas: int
    max_resident: int
    step_hit_rate: float  # pipeline steps whose adapter was resident where they ran
    cold_loads_per_run: float
    hops_per_run: int  # router-to-replica calls per pipeline run
    request_hit_rate: float  # the single requests beside the pipelines
    cold_loads_per_s: float  # everything, all replicas


def simulate_pipelines(workload: Workload, replicas: int, max_resident: int, placement: str,
                       seed: int = 0) -> PipelineOutcome:
    """Affinity routing throughout; only where a pipeline's steps run differs. A step holds its slot for one
    service time; a pipeline run placed whole holds its replica's slot for all its steps."""
    rng = random.Random(seed)
    sample = zipf_sampler(workload, rng)
    definitions = [[sample() for _ in range(workload.steps)] for _ in range(workload.pipelines)]
    popularity = zipf_sampler(replace(workload, adapters=workload.pipelines), rng)
    fleet = Fleet(workload, replicas, max_resident, "affinity", rng)
    mean_work_s = workload.service_s * (1 + workload.pipeline_share * (workload.steps - 1))
    rate = workload.utilization * workload.slots * replicas / mean_work_s
    now, start_time = 0.0, 0.0
    counts = {"step_hits": 0, "steps": 0, "runs": 0, "request_hits": 0, "requests": 0, "loads": 0}
    warm_up = workload.requests // 5
    for index in range(workload.requests):
        now += rng.expovariate(rate)
        fleet.advance(now)
        if index == warm_up:
            start_time, counts = now, dict.fromkeys(counts, 0)
        if rng.random() < workload.pipeline_share:
            steps = definitions[popularity()]
            counts["runs"] += 1
            chosen = fleet.choose(steps[0])
            for step, adapter in enumerate(steps):
                if placement == "per_step" and step:
                    chosen = fleet.choose(adapter)
                hit = fleet.run(chosen, adapter)
                counts["step_hits"] += hit
                counts["steps"] += 1
                counts["loads"] += not hit
                if placement == "per_step" or step == len(steps) - 1:
                    held = len(steps) if placement == "whole" else 1
                    fleet.hold(chosen, now, rng.expovariate(1 / workload.service_s) * held)
        else:
            adapter = sample()
            chosen = fleet.choose(adapter)
            hit = fleet.run(chosen, adapter)
            fleet.hold(chosen, now, rng.expovariate(1 / workload.service_s))
            counts["request_hits"] += hit
            counts["requests"] += 1
            counts["loads"] += not hit
    return PipelineOutcome(
        placement=placement, replicas=replicas, max_resident=max_resident,
        step_hit_rate=round(counts["step_hits"] / counts["steps"], 4),
        cold_loads_per_run=round((counts["steps"] - counts["step_hits"]) / counts["runs"], 3),
        hops_per_run=1 if placement == "whole" else workload.steps,
        request_hit_rate=round(counts["request_hits"] / counts["requests"], 4),
        cold_loads_per_s=round(counts["loads"] / (now - start_time), 1),
    )


def print_pipelines(workload: Workload, outcomes: list[PipelineOutcome], cold_load_ms: float) -> list[dict]:
    print(f"{workload.adapters} adapters, {workload.pipelines} named pipelines of {workload.steps} steps, Zipf "
          f"s={workload.zipf_s}, {workload.pipeline_share:.0%} of {workload.requests} arrivals run a pipeline, "
          f"offered load {workload.utilization:.0%} of the slots, affinity routing; a cold load costs "
          f"{cold_load_ms:g} ms")
    print("| replicas | max_resident_adapters | steps placed | step hit rate | cold loads per run | hops per run "
          "| single-request hit rate | cold loads/s | break-even hop cost |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    by_config = {(o.replicas, o.max_resident, o.placement): o for o in outcomes}
    for o in outcomes:
        whole = by_config[(o.replicas, o.max_resident, "whole")]
        per_step = by_config[(o.replicas, o.max_resident, "per_step")]
        # Per-step routing saves (whole's cold loads - its own) x cold_load_ms per run and pays its extra hops.
        saved_ms = (whole.cold_loads_per_run - per_step.cold_loads_per_run) * cold_load_ms
        extra_hops = per_step.hops_per_run - whole.hops_per_run
        break_even = saved_ms / extra_hops
        shown = f"{break_even:.1f} ms" if o.placement == "per_step" else ""
        print(f"| {o.replicas} | {o.max_resident} | {o.placement} | {o.step_hit_rate:.1%} | "
              f"{o.cold_loads_per_run:.3f} | {o.hops_per_run} | {o.request_hit_rate:.1%} | {o.cold_loads_per_s:g} "
              f"| {shown} |")
        if o.placement == "per_step":
            verdicts.append({"replicas": o.replicas, "max_resident": o.max_resident,
                             "break_even_hop_ms": round(break_even, 2)})
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="2,4,8")
    parser.add_argument("--max-resident", default="16,64,256")
    parser.add_argument("--adapters", type=int, default=Workload.adapters)
    parser.add_argument("--zipf-s", type=float, default=Workload.zipf_s)
    parser.add_argument("--utilization", type=float, default=Workload.utilization)
    parser.add_argument("--requests", type=int, default=Workload.requests)
    parser.add_argument("--pipelines", action="store_true", help="compare whole-pipeline and per-step placement")
    parser.add_argument("--cold-load-ms", type=float, default=22.0,
                        help="cost of compiling an adapter on a cold step (the benchmark's rank-16 LoRA, CPU)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workload = Workload(adapters=args.adapters, zipf_s=args.zipf_s, utilization=args.utilization,
                        requests=args.requests)
    grid = [(replicas, max_resident) for replicas in map(int, args.replicas.split(","))
            for max_resident in map(int, args.max_resident.split(","))]
    if args.pipelines:
        found = [simulate_pipelines(workload, replicas, max_resident, placement)
                 for replicas, max_resident in grid for placement in ("whole", "per_step")]
        verdicts = print_pipelines(workload, found, args.cold_load_ms)
        if args.out:
            args.out.write_text(json.dumps({"workload": asdict(workload), "cold_load_ms": args.cold_load_ms,
                                            "outcomes": [asdict(o) for o in found], "break_even": verdicts},
                                           indent=2) + "\n")
        return
    outcomes = [simulate(workload, replicas, max_resident, routing)
                for replicas, max_resident in grid for routing in ("random", "affinity")]
    print(f"{workload.adapters} adapters, Zipf s={workload.zipf_s}, {workload.requests} requests (first fifth is "
          f"warm-up), service {workload.service_s} s, {workload.slots} slots per replica, offered load "
          f"{workload.utilization:.0%} of the slots ({workload.utilization * workload.slots / workload.service_s:g} "
          "req/s per replica)")
    print("| replicas | max_resident_adapters | routing | resident hit rate | cold loads/s (per replica) "
          "| load skew (max/mean) | copies per resident adapter |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for o in outcomes:
        print(f"| {o.replicas} | {o.max_resident} | {o.routing} | {o.hit_rate:.1%} | {o.cold_loads_per_s:g} "
              f"({o.cold_loads_per_replica_s:g}) | {o.skew:.2f} | {o.copies:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"workload": asdict(workload), "outcomes": [asdict(o) for o in outcomes]},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
