"""The benchmark script still runs end to end (tiny shape, seconds); its figures are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("decode", ["eager", "static"])
def test_benchmark_runs_on_a_tiny_shape(tmp_path, decode):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "bench.run",
        "--shape",
        "tiny",
        "--batch",
        "4",
        "--prompt",
        "8",
        "--new",
        "6",
        "--adapters",
        "7",
        "--reps",
        "1",
        "--skip-static",
        "--device",
        "cpu",
        "--decode",
        decode,
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    assert {
        "hf_generate_eager",
        "peft_one_lora",
        "peft_mixed_7_lora",
        "ours_no_adapter",
        "ours_one_lora",
        "ours_mixed_7_all_kinds",
    } <= set(results["tok_s"])
    assert results["setup"]["ours_decode"] == decode
    assert ("ours_eager_no_adapter" in results["tok_s"]) == (decode == "static")
    assert results["stream"]["requests"] == 16 and results["ours_cold_load_lora_r16_ms"] > 0
    streamed = results["stream"]["streamed"]
    assert 0 < streamed["time_to_first_token"]["p50_ms"] <= streamed["end_to_end"]["p50_ms"]
    assert streamed["inter_token_latency"]["p50_ms"] > 0
