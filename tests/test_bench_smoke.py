"""The benchmark script still runs end to end (tiny shape, seconds); its figures are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys


def test_benchmark_runs_on_a_tiny_shape(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench.run", "--shape", "tiny", "--batch", "4", "--prompt", "8", "--new", "6",
               "--adapters", "7", "--reps", "1", "--skip-static", "--device", "cpu", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())
    assert {"hf_generate_eager", "peft_one_lora", "peft_mixed_7_lora", "ours_no_adapter", "ours_one_lora",
            "ours_mixed_7_all_kinds"} <= set(results["tok_s"])
    assert results["stream"]["requests"] == 16 and results["ours_cold_load_lora_r16_ms"] > 0
