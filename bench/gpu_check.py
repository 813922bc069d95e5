"""Every GPU-only check in one command, for whoever next has a GPU machine (no session has had one yet):

    make gpu-check OUT=results/h100            # or: python -m bench.gpu_check results/h100

1. the CUDA tests (`pytest -m cuda`: CUDA graphs vs eager steps, graphs vs PEFT in bf16),
2. the GPU benchmark on the SmolLM2-135M and Llama-3.2-1B shapes (static path with CUDA graphs; it also
   measures the eager path, transformers and PEFT in the same run).
Writes into OUT: cuda-tests.txt, smollm2-135m.json, llama-1b.json, summary.json (device, versions, each
step's exit status and seconds). Budget: about ten minutes on an H100. Exits non-zero if any step failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

STEPS = [
    (
        "cuda-tests",
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/", "-p", "no:cacheprovider"],
        "cuda-tests.txt",
    ),
    (
        "bench-smollm2-135m",
        [sys.executable, "-m", "bench.run", "--shape", "smollm2-135m", "--reps", "2"],
        "smollm2-135m.json",
    ),
    ("bench-llama-1b", [sys.executable, "-m", "bench.run", "--shape", "llama-1b", "--reps", "2"], "llama-1b.json"),
]


def device_summary() -> dict:
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"machine": device_summary(), "steps": {}}
    if summary["machine"]["device"] is None:
        print("gpu-check: no CUDA device here; nothing to check", file=sys.stderr)
        return 2
    failed = False
    for name, command, artifact in STEPS:
        if artifact.endswith(".json"):
            command = [*command, "--out", str(out / artifact)]
        started = time.monotonic()
        print(f"gpu-check: {name}: {' '.join(command)}", flush=True)
        with open(out / (artifact if artifact.endswith(".txt") else f"{name}.log"), "w") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        summary["steps"][name] = {"command": command, "status": status, "seconds": round(time.monotonic() - started, 1)}
        failed |= status != 0
        print(f"gpu-check: {name}: exit {status}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
