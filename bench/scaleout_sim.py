"""Scale-out on paper: R replicas, thousands of adapters of Zipf popularity, each replica keeping at most K compiled
(LRU, as the adapter cache and Serve's multiplexing both do). Random routing against adapter-affinity routing.

Affinity is modelled on Serve's multiplexed routing: a request goes to the least busy replica that has its
adapter resident, unless every such replica is at its concurrency limit; a request for an adapter resident
nowhere goes to a replica with the fewest resident adapters (all are full in steady state: any of them). Requests
arrive as a Poisson stream and each holds its replica for an exponential service time. No GPU, no Ray: only the
counting. Measured after a warm-up of the first fifth of the requests.

    python -m bench.scaleout_sim --out bench/results/scaleout-sim.json
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
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    adapters: int = 5000
    zipf_s: float = 1.1
    utilization: float = 0.6  # offered load as a share of all replicas' slots: rate = u * slots * R / service_s
    requests: int = 60000
    service_s: float = 0.5  # mean time a request holds a replica slot
    slots: int = 64  # concurrent requests per replica (max_ongoing_requests)


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


def simulate(workload: Workload, replicas: int, max_resident: int, routing: str, seed: int = 0) -> Outcome:
    rng = random.Random(seed)
    sample = zipf_sampler(workload, rng)
    fleet = [Replica(max_resident) for _ in range(replicas)]
    holders: dict[int, set[int]] = {}  # adapter -> replicas where it is resident
    finishing: list[tuple[float, int]] = []
    rate = workload.utilization * workload.slots * replicas / workload.service_s
    now, hits, loads, measured = 0.0, 0, 0, 0
    warm_up = workload.requests // 5
    start_time = 0.0
    for index in range(workload.requests):
        now += rng.expovariate(rate)
        while finishing and finishing[0][0] <= now:
            fleet[heapq.heappop(finishing)[1]].busy -= 1
        adapter = sample()
        if routing == "random":
            chosen = rng.randrange(replicas)
        else:
            warm = [r for r in holders.get(adapter, ()) if fleet[r].busy < workload.slots]
            if warm:
                chosen = min(warm, key=lambda r: fleet[r].busy)
            else:  # nowhere warm (or every holder full): the fewest resident, then the least busy
                fewest = min(len(replica.resident) for replica in fleet)
                candidates = [r for r, replica in enumerate(fleet) if len(replica.resident) == fewest]
                chosen = min(rng.sample(candidates, min(2, len(candidates))), key=lambda r: fleet[r].busy)
        replica = fleet[chosen]
        before = set(replica.resident)
        hit = replica.run(adapter)
        for gone in before - set(replica.resident):
            holders[gone].discard(chosen)
        holders.setdefault(adapter, set()).add(chosen)
        replica.busy += 1
        heapq.heappush(finishing, (now + rng.expovariate(1 / workload.service_s), chosen))
        if index == warm_up:
            start_time, hits, loads = now, 0, 0
            for r in fleet:
                r.served = 0
        if index >= warm_up:
            measured += 1
            hits += hit
            loads += not hit
    served = [replica.served for replica in fleet]
    resident_copies = [len(h) for h in holders.values() if h]
    return Outcome(
        routing=routing,
        replicas=replicas,
        max_resident=max_resident,
        rate=rate,
        hit_rate=round(hits / measured, 4),
        cold_loads_per_s=round(loads / (now - start_time), 1),
        cold_loads_per_replica_s=round(loads / (now - start_time) / replicas, 1),
        skew=round(max(served) / statistics.mean(served), 3),
        copies=round(statistics.mean(resident_copies), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="2,4,8")
    parser.add_argument("--max-resident", default="16,64,256")
    parser.add_argument("--adapters", type=int, default=Workload.adapters)
    parser.add_argument("--zipf-s", type=float, default=Workload.zipf_s)
    parser.add_argument("--utilization", type=float, default=Workload.utilization)
    parser.add_argument("--requests", type=int, default=Workload.requests)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workload = Workload(adapters=args.adapters, zipf_s=args.zipf_s, utilization=args.utilization,
                        requests=args.requests)
    outcomes = [
        simulate(workload, replicas, max_resident, routing)
        for replicas in map(int, args.replicas.split(","))
        for max_resident in map(int, args.max_resident.split(","))
        for routing in ("random", "affinity")
    ]
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
