"""Bottleneck adapters through the store and HTTP: the folder AdapterHub's save_adapter wrote uploads as is (form
files, zip, tar.gz, a local folder), a head that copies the base model's output layer is accepted and never
stored, anything else is refused by name with the store unchanged; and at the engine, every option the engine
does not serve and every mismatch between config, weights and base model is refused naming it."""

from __future__ import annotations

import copy
import io
import json
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from service.config import Settings
from service.engine import Engine, SamplingParams
from service.engine.base_model import wrap_base_model
from service.errors import IncompatibleAdapter, InvalidAdapterConfig, InvalidAdapterWeights, UnsupportedAdapter
from service.main import create_app
from tests.http_server import serve
from tests.test_bottleneck import EXPECTED, FIXTURES, stored_form

LIBRARY_FILES = ("adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors")
TEXT = "Who painted the Mona Lisa?"


def form(directory: Path, names=LIBRARY_FILES) -> dict:
    return {"files": [("files", (name, (directory / name).read_bytes(), "application/octet-stream")) for name in names]}


def archive(directory: Path, kind: str, names=LIBRARY_FILES) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as out:
            for name in names:
                out.write(directory / name, f"seq_bn/{name}")  # zipping the folder itself
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as out:
            for name in names:
                out.add(directory / name, name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_base):
    store = tmp_path_factory.mktemp("bn-store")
    settings = Settings(adapters_dir=store, load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, store


def stored_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and ".staging" not in p.parts)


@pytest.mark.parametrize("how", ["form", "zip", "tar.gz"])
def test_the_library_folder_uploads_as_is_and_its_head_is_not_kept(server, engine, tmp_path, how) -> None:
    client, store = server
    name = f"bn-{how.replace('.', '-')}"
    source = FIXTURES / "seq_bn"
    if how == "form":
        answer = client.put(f"/adapters/{name}", **form(source))
    else:
        answer = client.put(f"/adapters/{name}", content=archive(source, how))
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert record["kind"] == "bottleneck"
    assert record["parameters"] == EXPECTED["outputs"]["seq_bn"]["parameters"]
    kept = [path for path in stored_files(store) if path.startswith(f"{name}/")]
    assert sorted(Path(p).name for p in kept) == ["adapter_config.json", "adapter_model.safetensors", "record.json"]
    # Served as compiled from the same files straight into an engine (whose equality with the library
    # test_bottleneck.py checks).
    direct = engine.compile(stored_form(source, tmp_path / "direct"))
    served = client.post("/generate", json={"adapter": name, "text": TEXT, "max_new_tokens": 8}).json()
    engine.register("bn-direct", direct)
    try:
        expected = engine.generate([TEXT], "bn-direct", SamplingParams(max_new_tokens=8))[0]
    finally:
        engine.unregister("bn-direct")
    assert served["text"] == expected.text and served["completion_tokens"] == len(expected.token_ids)


def test_an_upload_without_a_head_is_the_same(server) -> None:
    client, _ = server
    answer = client.put("/adapters/no-head", **form(FIXTURES / "compacter", LIBRARY_FILES[:2]))
    assert answer.status_code == 201, answer.text


def test_a_local_folder_with_a_head_is_staged_without_it(tmp_path, tiny_base) -> None:
    from service.registry import AdapterRegistry
    from service.store import AdapterStore

    store = AdapterStore(tmp_path / "store", max_upload_bytes=1 << 24)
    registry = AdapterRegistry(store, Engine(tiny_base, decode="eager"))
    registry.put("folder", store.stage_directory(FIXTURES / "double_seq_bn"))
    kept = sorted(p.name for p in store.files("folder").iterdir())
    assert kept == ["adapter_config.json", "adapter_model.safetensors"]


def changed_head(tmp_path: Path, change) -> Path:
    folder = tmp_path / "head-changed"
    folder.mkdir()
    for name in LIBRARY_FILES:
        (folder / name).write_bytes((FIXTURES / "seq_bn" / name).read_bytes())
    change(folder)
    return folder


def _nudge_head(folder: Path) -> None:
    tensors = load_file(folder / "model_head.safetensors")
    tensors["lm_head.weight"][0, 0] += 1e-3
    save_file(tensors, str(folder / "model_head.safetensors"))


def _classification_head(folder: Path) -> None:
    config = json.loads((folder / "head_config.json").read_text())
    config["config"] = {"head_type": "classification", "num_labels": 2, "layers": 2}
    (folder / "head_config.json").write_text(json.dumps(config))


def _extra_head_tensor(folder: Path) -> None:
    tensors = load_file(folder / "model_head.safetensors")
    tensors["lm_head.bias"] = torch.zeros(tensors["lm_head.weight"].shape[0])
    save_file(tensors, str(folder / "model_head.safetensors"))


@pytest.mark.parametrize("change, says", [
    (_nudge_head, "differs from the base model's output layer"),
    (_classification_head, "'classification' head"),
    (_extra_head_tensor, "lm_head.bias"),
])
def test_a_head_other_than_the_base_models_is_refused(server, tmp_path, change, says) -> None:
    client, store = server
    before = stored_files(store)
    answer = client.put("/adapters/other-head", **form(changed_head(tmp_path, change)))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "unsupported_adapter"
    assert says in answer.json()["error"]["message"] and "heads are not served" in answer.json()["error"]["message"]
    assert stored_files(store) == before


def test_half_a_head_and_two_weights_files_are_refused(server) -> None:
    client, store = server
    before = stored_files(store)
    source = FIXTURES / "seq_bn"
    half = client.put("/adapters/half", **form(source, LIBRARY_FILES[:3]))
    assert half.status_code == 400 and "head comes as both" in half.json()["error"]["message"]
    files = form(source, LIBRARY_FILES[:2])["files"] + [
        ("files", ("adapter_model.safetensors", (source / "adapter.safetensors").read_bytes(), "x"))]
    both = client.put("/adapters/both", files=files)
    assert both.status_code == 400 and "holds both" in both.json()["error"]["message"]
    assert stored_files(store) == before


def test_adapterhub_pickles_are_refused_with_the_library_advice(server) -> None:
    client, _ = server
    files = [("files", ("adapter_config.json", (FIXTURES / "seq_bn" / "adapter_config.json").read_bytes(), "x")),
             ("files", ("pytorch_adapter.bin", b"\x80\x04not really", "x"))]
    answer = client.put("/adapters/pickled", files=files)
    assert answer.status_code == 415
    assert "save_adapter(out_dir, name, use_safetensors=True)" in answer.json()["error"]["message"]


# -- the engine's refusals -------------------------------------------------------------------------------


def variant(tmp_path: Path, source: str = "seq_bn", *, config=None, top=None, tensors=None) -> Path:
    """A fixture adapter in stored form with its config or tensors changed by the given functions."""
    folder = stored_form(FIXTURES / source, tmp_path / f"variant-{source}")
    saved = json.loads((folder / "adapter_config.json").read_text())
    if config:
        config(saved["config"])
    if top:
        top(saved)
    (folder / "adapter_config.json").write_text(json.dumps(saved))
    if tensors:
        weights = load_file(folder / "adapter_model.safetensors")
        tensors(weights)
        save_file(weights, str(folder / "adapter_model.safetensors"))
    return folder


def first_key(weights: dict, part: str) -> str:
    return next(key for key in sorted(weights) if key.endswith(part))


def _scale(part: str, value: float):
    def change(weights: dict) -> None:
        key = first_key(weights, part)
        weights[key] = weights[key].clone()
        weights[key].view(-1)[0] = value
    return change


REFUSALS = {
    "gating (a file the library wrote)": ({"source": "seq_bn_gating"}, UnsupportedAdapter, "use_gating"),
    "ln_before": ({"config": lambda c: c.update(ln_before=True)}, UnsupportedAdapter, "ln_before"),
    "invertible": ({"config": lambda c: c.update(inv_adapter="nice")}, UnsupportedAdapter, "invertible adapters"),
    "cross-attention": ({"config": lambda c: c.update(cross_adapter=True)}, UnsupportedAdapter, "cross_adapter"),
    "post_add": ({"config": lambda c: c.update(residual_before_ln="post_add")}, UnsupportedAdapter, "post_add"),
    "unknown option": ({"config": lambda c: c.update(new_option=1)}, InvalidAdapterConfig, "new_option"),
    "unknown field": ({"top": lambda t: t.update(extra=1)}, InvalidAdapterConfig, "extra"),
    "AdapterHub LoRA": ({"config": lambda c: c.update(architecture="lora")}, UnsupportedAdapter, "AdapterHub lora"),
    "another model type": ({"top": lambda t: t.update(model_type="mistral")}, IncompatibleAdapter, "mistral"),
    "another width": ({"top": lambda t: t.update(hidden_size=128)}, IncompatibleAdapter, "hidden size 128"),
    "unknown non-linearity": ({"config": lambda c: c.update(non_linearity="sine")}, UnsupportedAdapter, "'sine'"),
    "bad scaling": ({"config": lambda c: c.update(scaling="huge")}, InvalidAdapterConfig, "'scaling'"),
    "boolean reduction factor": ({"config": lambda c: c.update(reduction_factor=True)}, InvalidAdapterConfig,
                                 "'reduction_factor'"),
    "another reduction factor": ({"config": lambda c: c.update(reduction_factor=4)}, InvalidAdapterWeights,
                                 "has shape (8, 64)"),
    "no default reduction": ({"config": lambda c: c.update(reduction_factor={"0": 8})}, InvalidAdapterConfig,
                             "no factor for layer 1"),
    "layer in leave_out": ({"config": lambda c: c.update(leave_out=[1])}, InvalidAdapterConfig, "is in leave_out"),
    "leave_out outside": ({"config": lambda c: c.update(leave_out=[7])}, IncompatibleAdapter, "layer 7"),
    "location not declared": ({"source": "double_seq_bn", "config": lambda c: c.update(mh_adapter=False)},
                              InvalidAdapterConfig, "mh_adapter is false"),
    "location without weights": ({"config": lambda c: c.update(mh_adapter=True)}, InvalidAdapterConfig,
                                 "weights hold none"),
    "nothing declared": ({"config": lambda c: c.update(output_adapter=False)}, InvalidAdapterConfig, "adds nothing"),
    "phm_dim": ({"source": "compacter", "config": lambda c: c.update(phm_dim=3)}, InvalidAdapterConfig, "phm_dim 3"),
    "a layer too many": ({"tensors": lambda w: w.update({first_key(w, "up.bias").replace("layers.0", "layers.5"):
                                                          torch.zeros(64)})}, IncompatibleAdapter, "layer 5"),
    "another adapter's tensor": ({"tensors": lambda w: w.update({first_key(w, "up.bias").replace(".seq_bn.", ".x."):
                                                                 torch.zeros(64)})}, InvalidAdapterConfig, "named 'x'"),
    "unexpected tensor": ({"tensors": lambda w: w.update({first_key(w, "up.bias").replace("up.bias", "extra"):
                                                          torch.zeros(64)})}, InvalidAdapterWeights, "extra"),
    "missing tensor": ({"tensors": lambda w: w.pop(first_key(w, "up.bias"))}, InvalidAdapterWeights,
                       "lacks its 'adapter_up.bias'"),
    "stray key": ({"tensors": lambda w: w.update({"lm_head.weight": torch.zeros(2)})}, InvalidAdapterWeights,
                  "'lm_head.weight' is not one of"),
    "NaN": ({"tensors": _scale("up.weight", float("nan"))}, InvalidAdapterWeights, "NaN"),
    "missing shared rule": ({"source": "compacter", "tensors": lambda w: w.pop(first_key(w, "phm_rule"))},
                            InvalidAdapterWeights, "shared parameter 'phm_rule'"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_by_name(case, tmp_path, tiny_base) -> None:
    changes, error, says = REFUSALS[case]
    folder = variant(tmp_path, **changes)
    with pytest.raises(error) as raised:
        Engine(tiny_base, decode="eager").load("bad", folder)
    assert says in str(raised.value), str(raised.value)


def test_a_qwen2_base_is_refused_because_the_library_wires_it_otherwise(tmp_path, tiny_model, tokenizer) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = tiny_model.config.to_dict()
    qwen = Qwen2ForCausalLM(Qwen2Config(**{k: v for k, v in config.items() if k != "model_type"})).eval()
    engine = Engine(wrap_base_model(copy.deepcopy(qwen), tokenizer, name="qwen"), decode="eager")
    with pytest.raises(UnsupportedAdapter, match="served on llama, mistral base models"):
        engine.load("bn", variant(tmp_path, top=lambda t: t.update(model_type="qwen2")))


def test_the_python_client_uploads_the_library_folder(server) -> None:
    """The client sends a saved AdapterHub folder's config and weights (not its head) like a PEFT folder."""
    from clients import DeltaServeClient

    client, _ = server
    with DeltaServeClient(str(client.base_url)) as ours:
        record = ours.upload_adapter("from-client", FIXTURES / "par_bn")
    assert record.kind == "bottleneck" and record.parameters == EXPECTED["outputs"]["par_bn"]["parameters"]
    assert client.get("/adapters/from-client").json()["kind"] == "bottleneck"
