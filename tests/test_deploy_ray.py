"""The shipped Serve config and KubeRay manifest: valid YAML with the fields they need, in agreement with each other
and with the application's arguments; with Ray installed, Serve's own schema accepts them and the application builds.
(Neither runs here: no Kubernetes; the Ray tests run the same application on a local cluster.)"""

from __future__ import annotations

import pytest
import yaml

from service.config import Settings
from service.settings_flags import ENV_ONLY
from tests.deploy_helpers import REPO_ROOT

SERVE_CONFIG = REPO_ROOT / "deploy" / "serve.yaml"
RAY_SERVICE = REPO_ROOT / "deploy" / "rayservice.yaml"


@pytest.fixture(scope="module")
def serve_config() -> dict:
    return yaml.safe_load(SERVE_CONFIG.read_text())


@pytest.fixture(scope="module")
def ray_service() -> dict:
    return yaml.safe_load(RAY_SERVICE.read_text())


def _application(config: dict) -> dict:
    [application] = config["applications"]
    return application


def test_serve_config_runs_our_application_with_autoscaling_on_one_gpu_per_replica(serve_config):
    application = _application(serve_config)
    assert application["import_path"] == "service.ray_serve.app:build_app"
    assert application["route_prefix"] == "/"
    settings = application["args"]["settings"]
    Settings(**settings)  # every setting is one the service knows, with a valid value
    assert not set(settings) & ENV_ONLY  # no key in a file
    assert application["args"]["num_gpus"] == 1
    deployments = {d["name"]: d for d in application["deployments"]}
    assert set(deployments) == {"DeltaServeEngine", "DeltaServeRouter"}
    scaling = deployments["DeltaServeEngine"]["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["initial_replicas"] <= scaling["max_replicas"]
    assert scaling["target_ongoing_requests"] > 0
    assert deployments["DeltaServeEngine"]["max_ongoing_requests"] == settings["max_concurrent_requests"]
    assert deployments["DeltaServeEngine"]["graceful_shutdown_timeout_s"] > Settings().shutdown_grace_s
    # Serve's proxy closes idle connections as one process does, and never cuts a request our deadline would end.
    http = serve_config["http_options"]
    assert http["keep_alive_timeout_s"] == Settings().keep_alive_s
    assert http["request_timeout_s"] > Settings().request_timeout_s


def test_ray_service_carries_the_serve_config_and_mounts_the_store_everywhere(serve_config, ray_service):
    assert (ray_service["apiVersion"], ray_service["kind"]) == ("ray.io/v1", "RayService")
    spec = ray_service["spec"]
    carried = yaml.safe_load(spec["serveConfigV2"])
    assert carried["applications"] == serve_config["applications"]
    timeouts = ("keep_alive_timeout_s", "request_timeout_s")
    assert {k: carried["http_options"][k] for k in timeouts} == {k: serve_config["http_options"][k] for k in timeouts}
    cluster = spec["rayClusterConfig"]
    store = _application(serve_config)["args"]["settings"]["adapters_dir"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        [container] = pod["containers"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == [store]  # one store, the same path on every pod
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert claims == {container["volumeMounts"][0]["name"]: "deltaserve-adapters"}
        keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
        assert keys == {"DELTASERVE_ADMIN_KEY": "deltaserve-keys", "DELTASERVE_API_KEYS": "deltaserve-keys"}
    [gpu] = cluster["workerGroupSpecs"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    assert cluster["rayVersion"] == _pinned_ray()


def _pinned_ray() -> str:
    pins = dict(line.split("==") for line in (REPO_ROOT / "constraints.txt").read_text().split() if "==" in line)
    return pins["ray"]


@pytest.mark.ray
def test_serve_accepts_both_and_the_application_builds(serve_config, ray_service):
    pytest.importorskip("ray")
    from ray.serve.schema import ServeDeploySchema

    from service.ray_serve.app import build_app
    from service.ray_serve.launch import proxy_http_options

    shipped = serve_config["http_options"]  # `deltaserve serve --replicas` starts Serve's proxy as the file does
    assert {k: shipped[k] for k in ("keep_alive_timeout_s", "request_timeout_s")} == {
        k: v for k, v in proxy_http_options(Settings()).items() if k in ("keep_alive_timeout_s", "request_timeout_s")
    }
    for config in (serve_config, yaml.safe_load(ray_service["spec"]["serveConfigV2"])):
        ServeDeploySchema.model_validate(config)
        build_app(_application(config)["args"])
    with pytest.raises(ValueError, match="environment only"):
        build_app({"settings": {"admin_key": "in-a-file"}})
    with pytest.raises(ValueError, match="unknown application arguments"):
        build_app({"replica": 2})
