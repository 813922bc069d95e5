"""Scale-out on a real local Ray cluster (two CPUs): two engine replicas of the tiny model behind the router, one
store folder. Answers through Serve's proxy equal a single process's; writes through any replica are served by
every replica (asked one by one with Serve's broadcast); requests go where their adapter is warm; a replica
killed mid-traffic fails only its own requests, cleanly, and the next requests succeed."""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time

import httpx
import pytest

ray = pytest.importorskip("ray")
from ray import serve  # noqa: E402

from service.config import Settings  # noqa: E402
from service.main import create_app  # noqa: E402
from service.ray_serve.app import build_app  # noqa: E402
from service.ray_serve.deployments import ENGINE_DEPLOYMENT  # noqa: E402
from service.ray_serve.forwarding import ForwardedRequest  # noqa: E402
from service.ray_serve.launch import proxy_http_options  # noqa: E402
from service.store import AdapterStore  # noqa: E402
from tests.http_server import serve as serve_locally  # noqa: E402
from tests.test_api import multipart  # noqa: E402

pytestmark = pytest.mark.ray
APP = "deltaserve"
PROMPT = "When was the Beijing Olympic held?"
LONG_STREAM_TOKENS = 1000  # a stream lasts seconds, so all six have started while the victim's still run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_model, tokenizer):
    """The proxy's client, the engine deployment's handle, a single-process reference server's client, and the
    shared store's folder."""
    root = tmp_path_factory.mktemp("ray")
    # A local directory: the replicas load it as any base model. Its context is long enough for streams that
    # outlast a replica kill under CPU contention (rotary positions do not depend on this limit).
    base = copy.deepcopy(tiny_model)
    base.config.max_position_embeddings = LONG_STREAM_TOKENS + 64
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    env = {"DELTASERVE_BASE_MODEL": str(root / "base"), "DELTASERVE_DEVICE": "cpu",
           "DELTASERVE_LOAD_DEMO_ADAPTERS": "false", "DELTASERVE_MAX_BATCH_WAIT_MS": "5", "OMP_NUM_THREADS": "1"}
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False,
             configure_logging=False)
    try:
        serve.start(http_options=proxy_http_options(Settings(host="127.0.0.1", port=port)))  # as the CLI
        settings = {"adapters_dir": str(root / "shared")}
        serve.run(build_app({"settings": settings, "replicas": 2, "num_cpus": 0.5, "router_num_cpus": 0}),
                  name=APP, route_prefix="/")
        engine = serve.get_deployment_handle(ENGINE_DEPLOYMENT, app_name=APP)
        reference_settings = Settings(adapters_dir=root / "reference", **{k.removeprefix("DELTASERVE_").lower(): v
                                      for k, v in env.items() if k.startswith("DELTASERVE_")})
        with serve_locally(create_app(reference_settings)) as reference_url, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as proxy, \
                httpx.Client(base_url=reference_url, timeout=60) as reference:
            yield proxy, engine, reference, root / "shared"
    finally:
        serve.shutdown()
        ray.shutdown()


def _upload(clients, name: str, directory, **fields) -> None:
    for client in clients:
        answer = client.put(f"/adapters/{name}", **multipart(directory, **fields))
        assert answer.status_code in (200, 201), answer.text


def _on_every_replica(engine, method: str, path: str, body: dict | None = None) -> dict[str, tuple[int, dict]]:
    """One request sent to each replica (Serve's broadcast): replica -> (status, JSON answer)."""
    request = ForwardedRequest(method, path, b"", [(b"content-type", b"application/json")],
                               json.dumps(body).encode() if body is not None else b"")
    answers = engine.broadcast("call", request).results(timeout_s=120)
    return {answer.replica: (answer.status, json.loads(answer.body) if answer.body else {}) for answer in answers}


def _generate(adapter: str | None, **extra) -> dict:
    return {"adapter": adapter, "text": PROMPT, "max_new_tokens": 10, **extra}


def _without_timings(result: dict) -> dict:
    return {**result, "steps": [{k: v for k, v in step.items() if k != "ms"} for step in result["steps"]]}


def test_answers_through_the_proxy_equal_a_single_process(cluster, adapter_dirs):
    proxy, _, reference, _ = cluster
    _upload((proxy, reference), "lora", adapter_dirs["lora"])
    _upload((proxy, reference), "prefix", adapter_dirs["prefix_tuning"], prompt_template="Q: {text}\nA:")
    for adapter in (None, "lora", "prefix"):
        through_serve = proxy.post("/generate", json=_generate(adapter))
        assert through_serve.status_code == 200
        assert through_serve.json() == reference.post("/generate", json=_generate(adapter)).json()
    streamed = proxy.post("/generate", json=_generate("lora", stream=True))
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text == reference.post("/generate", json=_generate("lora", stream=True)).text

    pipeline = {"text": PROMPT, "steps": [{"name": "one", "adapter": "lora", "max_new_tokens": 6},
                                          {"name": "two", "adapter": "prefix", "max_new_tokens": 6},
                                          {"name": "three", "adapter": None, "input": "{one} {two}",
                                           "max_new_tokens": 6}]}
    through_serve = proxy.post("/pipeline", json=pipeline)
    assert through_serve.status_code == 200
    assert _without_timings(through_serve.json()) == _without_timings(reference.post("/pipeline", json=pipeline).json())

    completion = {"model": "lora", "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
    choices = proxy.post("/v1/completions", json=completion).json()["choices"]
    assert choices == reference.post("/v1/completions", json=completion).json()["choices"]
    # The same refusals, in the same shapes.
    for path, body in (("/generate", _generate("nope")), ("/generate", {"text": PROMPT, "max_new_tokens": 0}),
                       ("/v1/completions", {"model": "nope", "prompt": "x"})):
        mine, theirs = proxy.post(path, json=body), reference.post(path, json=body)
        assert (mine.status_code, mine.json()) == (theirs.status_code, theirs.json())
    oversized = {"text": "x" * (Settings().max_request_bytes + 10)}
    assert proxy.post("/generate", json=oversized).json()["error"]["code"] == "payload_too_large"


def test_an_upload_is_served_by_every_replica_and_a_replacement_switches_them_all(cluster, adapter_dirs):
    proxy, engine, reference, _ = cluster
    _upload((proxy, reference), "swap", adapter_dirs["lora"])
    expected = reference.post("/generate", json=_generate("swap")).json()
    answers = _on_every_replica(engine, "POST", "/generate", _generate("swap"))
    assert len(answers) == 2
    assert all(answer == (200, expected) for answer in answers.values()), answers

    _upload((proxy, reference), "swap", adapter_dirs["ia3"])
    replaced = reference.post("/generate", json=_generate("swap")).json()
    assert replaced != expected
    answers = _on_every_replica(engine, "POST", "/generate", _generate("swap"))
    assert all(answer == (200, replaced) for answer in answers.values()), answers

    assert proxy.delete("/adapters/swap").status_code == 204
    answers = _on_every_replica(engine, "POST", "/generate", _generate("swap"))
    assert {status for status, _ in answers.values()} == {404}


def test_requests_for_an_adapter_go_to_a_replica_where_it_is_warm(cluster, adapter_dirs):
    proxy, _, _, _ = cluster
    names = [f"warm-{i}" for i in range(4)]
    for name, kind in zip(names, ("lora", "ia3", "prompt_tuning", "lora_patterns")):
        _upload((proxy,), name, adapter_dirs[kind])  # the replica that took the upload compiled it
        time.sleep(1)  # replicas report what is warm every 0.1 s; Serve's routers hear it through the controller
        assert proxy.post("/generate", json=_generate(name)).status_code == 200
    time.sleep(2)

    # Once settled, no request compiles anything anew: each goes to a replica where its adapter is warm, as each
    # replica's own request counter (scraped through the router, parsed by prometheus_client) shows. A report still
    # on its way during the warm-up may have left an adapter warm on both replicas (affinity is a preference), but
    # most are warm on one only: each replica keeps its own working set instead of loading everything.
    warm_before, before = _resident(proxy), _generate_counts(proxy)
    for name in names:
        for _ in range(5):
            assert proxy.post("/generate", json=_generate(name)).status_code == 200
    warm_after, after = _resident(proxy), _generate_counts(proxy)
    assert len(warm_before) == 2 and warm_after == warm_before
    homes = {name: {replica for replica, warm in warm_before.items() if name in warm} for name in names}
    assert all(homes.values()), homes
    assert sum(len(home) == 1 for home in homes.values()) >= len(names) // 2, homes
    for name, home in homes.items():
        moved = {replica: after.get((replica, name), 0) - before.get((replica, name), 0) for replica in warm_before}
        assert sum(moved.values()) == 5 and {replica for replica, n in moved.items() if n} <= home, (name, home, moved)


def _resident(proxy: httpx.Client) -> dict[str, set[str]]:
    """replica -> the adapters compiled and resident there."""
    stats = proxy.get("/replicas/stats").json()["replicas"]
    return {replica["replica"]: set(replica["adapters"]["resident"]) for replica in stats}


def _generate_counts(proxy: httpx.Client) -> dict[tuple[str, str], float]:
    """(replica, adapter) -> /generate requests answered there, from the merged per-replica metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = proxy.get("/replicas/metrics")
    assert metrics.status_code == 200
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.text):
        if family.name == "deltaserve_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("route") == "/generate":
                    key = (sample.labels["replica"], sample.labels["adapter"])
                    counts[key] = counts.get(key, 0) + sample.value
    return counts


def _stream(proxy: httpx.Client, text: str, out: dict, started: threading.Event) -> None:
    body = {"text": text, "max_new_tokens": LONG_STREAM_TOKENS, "stream": True}
    try:
        with proxy.stream("POST", "/generate", json=body) as answer:
            out["replica"] = answer.headers.get("x-deltaserve-replica")
            out["status"] = answer.status_code
            events = []
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                    started.set()
                elif line.startswith("data: ") and events and events[-1] in ("end", "error"):
                    out[events[-1]] = json.loads(line.removeprefix("data: "))
            out["events"] = events
    except httpx.HTTPError as exc:
        out["transport_error"] = repr(exc)
    finally:
        started.set()


def test_a_replica_killed_mid_traffic_fails_only_its_own_requests_cleanly(cluster, adapter_dirs):
    proxy, _, reference, store_root = cluster
    _upload((proxy, reference), "survivor", adapter_dirs["lora"])
    # Looked up before any stream starts, so the kill lands within milliseconds of the victim's first token,
    # long before its LONG_STREAM_TOKENS-token streams can end.
    engine_actors = [a for a in ray.util.list_named_actors(all_namespaces=True) if ENGINE_DEPLOYMENT in a["name"]]
    texts = [f"{PROMPT} {i}" for i in range(6)]
    results: list[dict] = [{} for _ in texts]
    started = [threading.Event() for _ in texts]
    threads = [threading.Thread(target=_stream, args=(proxy, text, out, event))
               for text, out, event in zip(texts, results, started)]
    for thread in threads:
        thread.start()
    for event in started:
        assert event.wait(120)
    victim = results[0]["replica"]
    actors = [a for a in engine_actors if victim in a["name"]]
    assert len(actors) == 1, (victim, engine_actors)
    ray.kill(ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"]), no_restart=True)
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a request hangs"

    # Every request ended with a complete answer (a single process's) or, on the killed replica only, with a
    # clean error event: none was cut off silently, none hangs.
    failed = [out for out in results if out.get("events", [])[-1:] == ["error"]]
    assert failed and {out["replica"] for out in failed} == {victim}, results
    assert all(out["error"]["error"]["code"] == "replica_failed" for out in failed)
    for text, out in zip(texts, results):
        if out not in failed:
            assert out.get("events", [])[-1:] == ["done"], out
            alone = reference.post("/generate", json={"text": text, "max_new_tokens": LONG_STREAM_TOKENS}).json()
            assert out["end"]["text"] == alone["text"]

    # New requests succeed meanwhile (on the survivor, then on Serve's replacement too).
    for _ in range(4):
        answer = proxy.post("/generate", json=_generate("survivor"))
        assert answer.status_code == 200, answer.text
        assert answer.json() == reference.post("/generate", json=_generate("survivor")).json()
    deadline = time.monotonic() + 180
    while True:
        deployment = serve.status().applications[APP].deployments[ENGINE_DEPLOYMENT]
        if deployment.replica_states.get("RUNNING", 0) == 2:
            break
        assert time.monotonic() < deadline, deployment
        time.sleep(1)
    while len(replicas := {r["replica"] for r in proxy.get("/replicas/stats").json()["replicas"]}) < 2:
        assert time.monotonic() < deadline, replicas  # the router hears of the replacement a moment later
        time.sleep(1)
    assert victim not in replicas
    # Nothing in the store was lost or left half-written.
    records = AdapterStore(store_root, Settings().max_upload_bytes).list()
    assert "survivor" in {record.name for record in records}
    assert os.listdir(store_root / ".staging") == []
