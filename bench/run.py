"""Side-by-side benchmark: our engine vs plain transformers / PEFT vs the base model alone, in one run.

Random-initialised Llama-architecture models of real shapes (speed does not depend on weight values);
every prompt has the same length and generation ignores end-of-sequence, so every row makes exactly
`--new` tokens. Ratios only count within one run: absolute figures move between machines.

    python -m bench.run --shape smollm2-135m --batch 32 --prompt 64 --new 64          # GPU defaults
    python -m bench.run --shape smollm2-135m --batch 8 --prompt 32 --new 32 --skip-static   # CPU-sized
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import peft
import torch
import transformers
from peft import (
    LoraConfig,
    get_peft_model,
)
from transformers import LlamaConfig, LlamaForCausalLM

from bench.workload import ATTENTION, adapter_configs, save_adapters, word_level_tokenizer
from service.engine import Engine, SamplingParams
from service.engine.base_model import wrap_base_model
from service.engine.batch import RowRequest
from service.engine.batcher import Batcher
from service.engine.deltas import compile_directory
from service.engine.rows import StreamDelta

SHAPES = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
    },
    "llama-1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
    },
    "llama-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
    },
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--adapters", type=int, default=32, help="distinct adapters in the mixed batch")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--skip-static", action="store_true", help="skip HF's static-cache generate (slow to compile on CPU)"
    )
    parser.add_argument(
        "--decode",
        choices=["auto", "eager", "static"],
        default="auto",
        help="our decode path (auto: static cache + CUDA graphs on a GPU, eager on CPU)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    B, P, N = args.batch, args.prompt, args.new
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[args.shape], max_position_embeddings=4096, tie_word_embeddings=True)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None  # every row makes exactly N tokens
    tokenizer = word_level_tokenizer(config.vocab_size)
    ids = torch.randint(10, config.vocab_size, (B, P), device=device)
    mask = torch.ones_like(ids)
    gen = {"max_new_tokens": N, "min_new_tokens": N, "do_sample": False}
    tokens = B * N
    results: dict = {
        "setup": {
            "shape": args.shape,
            "batch": B,
            "prompt_tokens": P,
            "new_tokens": N,
            "adapters": args.adapters,
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
            "dtype": str(dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "tok_s": {},
    }

    def record(label: str, seconds: float, count: int = tokens) -> None:
        results["tok_s"][label] = count / seconds
        print(f"{label:38s} {count / seconds:10.1f} tokens/s", flush=True)

    with torch.inference_mode():
        record(
            "hf_generate_eager",
            timed(lambda: model.generate(input_ids=ids, attention_mask=mask, **gen), device, args.reps),
        )
        if not args.skip_static:
            record(
                "hf_generate_static_cache",
                timed(
                    lambda: model.generate(input_ids=ids, attention_mask=mask, cache_implementation="static", **gen),
                    device,
                    args.reps,
                ),
            )

    workdir = Path(tempfile.mkdtemp(prefix="deltaserve-bench-"))
    configs = adapter_configs(args.adapters)
    paths = save_adapters(model, configs, workdir)
    lora_names = [name for name, _ in configs if name.startswith("lora")]

    # -- plain PEFT --------------------------------------------------------------------------------
    lora = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules=ATTENTION, init_lora_weights=False)
    peft_model = get_peft_model(model, lora, adapter_name="a0")
    for i in range(1, args.adapters):
        peft_model.add_adapter(f"a{i}", lora)
    peft_model.eval()
    with torch.inference_mode():
        peft_model.set_adapter("a0")
        record(
            "peft_one_lora",
            timed(lambda: peft_model.generate(input_ids=ids, attention_mask=mask, **gen), device, args.reps),
        )
        names = [f"a{i % args.adapters}" for i in range(B)]
        record(
            f"peft_mixed_{args.adapters}_lora",
            timed(
                lambda: peft_model.generate(input_ids=ids, attention_mask=mask, adapter_names=names, **gen),
                device,
                args.reps,
            ),
        )

        def one_by_one():
            for i in range(min(B, 8)):
                peft_model.set_adapter(f"a{i % args.adapters}")
                peft_model.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], **gen)

        record("peft_set_adapter_per_request_bs1", timed(one_by_one, device, 1), count=min(B, 8) * N)
        started = time.perf_counter()
        for i in range(20):
            peft_model.set_adapter(f"a{i % args.adapters}")
        sync(device)
        results["peft_set_adapter_ms"] = (time.perf_counter() - started) / 20 * 1000
    model = peft_model.unload()

    # -- ours --------------------------------------------------------------------------------------
    base = wrap_base_model(model, tokenizer, name=args.shape)
    base.eos_token_ids = frozenset()  # as min_new_tokens above: exactly N tokens per row
    # The cache holds the longest row: prompt, the most virtual/prefix tokens of any adapter above, new tokens.
    engine = Engine(
        base,
        max_resident_adapters=max(64, args.adapters),
        decode=args.decode,
        max_batch_size=B,
        kv_cache_tokens=P + N + 32,
    )
    results["setup"]["ours_decode"] = (
        "eager" if engine.decoder is None else ("static+cuda_graphs" if engine.decoder.use_graphs else "static")
    )
    for name, path in paths.items():
        engine.load(name, path)
    started = time.perf_counter()
    engine.warm_up()
    results["ours_warm_up_s"] = time.perf_counter() - started
    params = SamplingParams(max_new_tokens=N)
    prompts = [row.tolist() for row in ids.cpu()]

    def rows_for(adapters, source=None):
        return [
            RowRequest(prompt_ids=p, delta=(source or engine).get(a), params=params) for p, a in zip(prompts, adapters)
        ]

    record("ours_no_adapter", timed(lambda: engine.generate_rows(rows_for([None] * B)), device, args.reps))
    record(
        "ours_one_lora",
        timed(lambda: engine.generate_rows(rows_for([lora_names[1 % len(lora_names)]] * B)), device, args.reps),
    )
    for kind in ("bitfit", "bottleneck"):  # the kinds PEFT lacks, alone (when the mix has them)
        name = next((n for n, _ in configs if n.startswith(f"{kind}-")), None)
        if name is not None:
            record(f"ours_one_{kind}", timed(lambda n=name: engine.generate_rows(rows_for([n] * B)), device, args.reps))
    mixed = [configs[i % len(configs)][0] for i in range(B)]
    record(
        f"ours_mixed_{args.adapters}_all_kinds", timed(lambda: engine.generate_rows(rows_for(mixed)), device, args.reps)
    )

    # Switching adapters between steps: resolving them and setting up the batch's per-row deltas. A batch's
    # row tables keep the weights of adapters already in it (only the row -> number map changes); an adapter
    # new to the batch is copied into them. Both decode paths use the same tables.
    def switch_ms(row_lists) -> float:
        batch = engine.new_batch()  # the static path's fixed tables, or the eager batch's own
        try:
            with torch.inference_mode():
                batch.tables.assign([row.delta for row in row_lists[-1]])  # the batch so far
                started = time.perf_counter()
                for i in range(200):
                    rows = row_lists[i % len(row_lists)]
                    engine.get(adapter_of[rows[0].delta.uid])
                    numbers = batch.tables.assign([row.delta for row in rows])
                    torch.tensor(numbers, device=device)  # the row -> number map goes to the device
                sync(device)
                return (time.perf_counter() - started) / 200 * 1000
        finally:
            batch.close()

    names = [name for name, _ in configs]
    adapter_of = {engine.get(name).uid: name for name in names}
    window = names[:8]
    results["ours_switch_resident_ms"] = switch_ms([rows_for((window[i:] + window[:i]) * B)[:B] for i in range(8)])
    # Each step one adapter leaves the batch and another (resident on the device, new to the batch) joins.
    results["ours_switch_new_to_batch_ms"] = switch_ms(
        [rows_for([names[(i + k) % len(names)] for k in range(8)] * B)[:B] for i in range(len(names))]
    )
    # Cold load: a rank-16 LoRA compiled from disk onto the device.
    r16 = paths[next(n for n in lora_names if n.startswith("lora-r16"))]
    loads = []
    for _ in range(5):
        started = time.perf_counter()
        compile_directory(r16, base)
        sync(device)
        loads.append((time.perf_counter() - started) * 1000)
    results["ours_cold_load_lora_r16_ms"] = statistics.median(loads)

    # Latency under a steady stream of mixed requests through the continuous batcher: the same arrivals once
    # answered whole and once streamed token by token (time to first token, inter-token latency), so the two
    # end-to-end latencies show what streaming costs.
    async def steady(count: int, rate_per_s: float, streamed: bool) -> dict[str, list[float]]:
        batcher = Batcher(engine, max_batch_size=B, max_batch_wait_ms=2)
        batcher.start()
        rng = random.Random(0)
        seen: dict[str, list[float]] = {"end_to_end": [], "first_token": [], "inter_token": []}

        async def one(i: int):
            await asyncio.sleep(i / rate_per_s + rng.random() / rate_per_s)
            started = time.perf_counter()
            row = rows_for([mixed[i % len(mixed)]])[0]
            row.prompt_ids = prompts[i % B]
            if not streamed:
                await batcher.submit(row)
            else:
                last = None
                async for item in batcher.stream(row):
                    tokens = len(getattr(item, "token_ids", ()) or ())
                    if isinstance(item, StreamDelta) and tokens:
                        now = time.perf_counter()
                        if last is None:
                            seen["first_token"].append((now - started) * 1000)
                        else:
                            seen["inter_token"].append((now - last) * 1000 / tokens)
                        last = now
            seen["end_to_end"].append((time.perf_counter() - started) * 1000)

        try:
            await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            await batcher.stop()
        return seen

    def percentiles(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50_ms": ordered[len(ordered) // 2], "p99_ms": ordered[max(int(len(ordered) * 0.99) - 1, 0)]}

    mixed_rate = results["tok_s"][f"ours_mixed_{args.adapters}_all_kinds"] / N * 0.5  # half of capacity
    whole = asyncio.run(steady(4 * B, mixed_rate, streamed=False))
    streamed = asyncio.run(steady(4 * B, mixed_rate, streamed=True))
    results["stream"] = {
        "requests": len(whole["end_to_end"]),
        "rate_per_s": mixed_rate,
        **percentiles(whole["end_to_end"]),
        "streamed": {
            "end_to_end": percentiles(streamed["end_to_end"]),
            "time_to_first_token": percentiles(streamed["first_token"]),
            "inter_token_latency": percentiles(streamed["inter_token"]),
        },
    }

    if engine.decoder is not None:
        # Our eager path in the same run, to show what the static path (and its graphs) gains. Built only now,
        # so its hooks do not exist while the static path is measured.
        eager = Engine(base, max_resident_adapters=max(64, args.adapters), decode="eager")
        for name, path in paths.items():
            eager.load(name, path)
        record(
            "ours_eager_no_adapter", timed(lambda: eager.generate_rows(rows_for([None] * B, eager)), device, args.reps)
        )
        record(
            f"ours_eager_mixed_{args.adapters}_all_kinds",
            timed(lambda: eager.generate_rows(rows_for(mixed, eager)), device, args.reps),
        )

    tok = results["tok_s"]
    results["ratios"] = {
        "ours_mixed_vs_ours_no_adapter": tok[f"ours_mixed_{args.adapters}_all_kinds"] / tok["ours_no_adapter"],
        "ours_no_adapter_vs_hf_eager": tok["ours_no_adapter"] / tok["hf_generate_eager"],
        "ours_one_lora_vs_peft_one_lora": tok["ours_one_lora"] / tok["peft_one_lora"],
        "ours_mixed_vs_peft_mixed_lora": tok[f"ours_mixed_{args.adapters}_all_kinds"]
        / tok[f"peft_mixed_{args.adapters}_lora"],
    }
    if "ours_eager_no_adapter" in tok:
        results["ratios"]["ours_no_adapter_vs_ours_eager_path"] = tok["ours_no_adapter"] / tok["ours_eager_no_adapter"]
        results["ratios"]["ours_mixed_vs_ours_eager_path_mixed"] = (
            tok[f"ours_mixed_{args.adapters}_all_kinds"] / tok[f"ours_eager_mixed_{args.adapters}_all_kinds"]
        )
    if "hf_generate_static_cache" in tok:
        results["ratios"]["ours_no_adapter_vs_hf_static"] = tok["ours_no_adapter"] / tok["hf_generate_static_cache"]
    print(json.dumps({k: v for k, v in results.items() if k != "tok_s"}, indent=1))
    out = args.out or Path(__file__).parent / "results" / f"{args.shape}-{device.type}-b{B}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
