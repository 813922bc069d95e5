"""End to end on the real default model: the Dockerfile's own `deltaserve serve` command as a subprocess,
a PEFT adapter uploaded with the CLI, generation through the CLI equal to `PeftModel.generate`."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx
import pytest
from peft import PromptTuningConfig, PromptTuningInit

from service.config import Settings
from service.engine.base_model import load_base_model
from tests.deploy_helpers import local_command, local_env, local_serve_command
from tests.factory import save_adapter
from tests.peft_reference import greedy_tokens, load_peft

pytestmark = pytest.mark.e2e

ADMIN, USER = "e2e-admin-key", "e2e-user-key"
QUESTION = "What is the capital of France?"
TEMPLATE = "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = local_env(DELTASERVE_ADMIN_KEY=ADMIN, DELTASERVE_API_KEYS=USER,
                    DELTASERVE_ADAPTERS_DIR=str(tmp_path_factory.mktemp("e2e") / "store"), DELTASERVE_DEVICE="cpu")
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w+")  # noqa: SIM115  (open for the server's life)
    process = subprocess.Popen(local_serve_command(port=port), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"the server did not become ready:\n{log.read()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = local_env(DELTASERVE_URL=url, DELTASERVE_ADMIN_KEY=ADMIN, DELTASERVE_API_KEY=USER)
    return subprocess.run(local_command(["deltaserve", *args]), env=env, capture_output=True, text=True, timeout=300)


def test_cli_upload_and_generate_equal_peft(server, tmp_path):
    base = load_base_model(Settings(device="cpu"))
    config = PromptTuningConfig(task_type="CAUSAL_LM", prompt_tuning_init=PromptTuningInit.TEXT,
                                prompt_tuning_init_text="Answer in one word:", num_virtual_tokens=6,
                                tokenizer_name_or_path=base.model.name_or_path)
    directory = save_adapter(base.model, config, tmp_path / "one-word")

    upload = cli(server, "adapters", "upload", "one-word", str(directory), "--prompt-template", TEMPLATE, "--json")
    assert upload.returncode == 0, upload.stderr
    record = json.loads(upload.stdout)
    assert record["kind"] == "prompt_tuning" and record["version"] == 1

    generated = cli(server, "generate", "--adapter", "one-word", "--max-new-tokens", "12", "--json", QUESTION)
    assert generated.returncode == 0, generated.stderr
    answer = json.loads(generated.stdout)

    peft_model = load_peft(base.model, directory)
    eos = next(iter(base.eos_token_ids))
    tokens = greedy_tokens(peft_model, base.tokenizer, [TEMPLATE.replace("{text}", QUESTION)], 12, eos)[0]
    assert answer["text"] == base.tokenizer.decode(tokens, skip_special_tokens=True)
    assert answer["completion_tokens"] == len(tokens)

    listed = cli(server, "adapters", "list")
    assert listed.returncode == 0 and "one-word" in listed.stdout
    refused = cli(server, "adapters", "upload", "Bad Name", str(directory))
    assert refused.returncode == 1 and "invalid_name" in refused.stderr
