"""The soak command still runs end to end: a few seconds against the real server process on the tiny test
model, with every part of the mix exercised and a verdict written (its timings are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factory import build_tiny_model, build_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random Llama and its tokenizer saved as a local model directory the server can load."""
    directory = tmp_path_factory.mktemp("tiny-model")
    tokenizer = build_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_short_soak_on_the_tiny_model_passes(tmp_path, tiny_model_dir):
    out = tmp_path / "soak.json"
    command = [sys.executable, "-m", "bench.soak", "--base-model", str(tiny_model_dir), "--device", "cpu",
               "--duration", "8", "--concurrency", "3", "--max-concurrent-requests", "4", "--burst", "24",
               "--out", str(out)]
    finished = subprocess.run(command, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert out.exists(), finished.stdout[-3000:] + finished.stderr[-3000:]
    result = json.loads(out.read_text())
    assert finished.returncode == 0 and result["passed"], finished.stdout[-3000:]
    counts, actions = result["counts"], result["counts"]["by_action"]
    assert counts["answered_2xx"] > 0 and counts["refused_4xx"] > 0 and result["burst"]["shed_429"] > 0
    # Each part of the mix ran: kinds of request, store writes while requests ran, abuse, cancellations.
    for action in ("generate.greedy", "generate.swapped", "pipeline.inline", "churn.replace", "churn.create",
                   "churn.delete", "burst"):
        assert actions.get(action, 0) > 0, action
    assert sum(action.startswith("poison.") for action in actions) >= 25  # the sweep sends every poison once
    assert any(action.startswith("oversize.") for action in actions)
    assert result["health_ms"]["count"] > 0 and result["rss_mib"]["end_mib"] > 0
    assert result["command"].startswith("python -m bench.soak --base-model")
