"""The scale-out simulation counts what it says: affinity routing finds adapters resident more often than random
routing, per-step placement of a pipeline more often than whole placement, and a larger resident set helps both."""

from __future__ import annotations

from bench.scaleout_sim import Workload, simulate, simulate_pipelines

SMALL = Workload(adapters=400, requests=6000, slots=16)


def test_affinity_routing_beats_random_routing():
    random_routing = simulate(SMALL, replicas=4, max_resident=16, routing="random")
    affinity = simulate(SMALL, replicas=4, max_resident=16, routing="affinity")
    assert affinity.hit_rate > random_routing.hit_rate + 0.05
    assert affinity.copies < random_routing.copies  # affinity keeps one copy where random spreads them
    assert simulate(SMALL, 4, 64, "affinity").hit_rate > affinity.hit_rate


def test_pipeline_placements_count_their_hops_and_hits():
    whole = simulate_pipelines(SMALL, replicas=4, max_resident=16, placement="whole")
    per_step = simulate_pipelines(SMALL, replicas=4, max_resident=16, placement="per_step")
    assert (whole.hops_per_run, per_step.hops_per_run) == (1, SMALL.steps)
    assert per_step.step_hit_rate > whole.step_hit_rate
    assert per_step.cold_loads_per_run < whole.cold_loads_per_run
    assert 0 < whole.cold_loads_per_run <= SMALL.steps
