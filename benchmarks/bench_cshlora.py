"""CS-HLoRA speed against peft LoRA and the base model, measured in the same run.

Model: a Qwen3-VL language model of ~57M parameters (hidden 768, 8 layers; random
weights; text only, which is where the adapters live), batch 4. Adapters: rank 64 on
every language-model linear.

* training step (forward + backward + AdamW step): CS-HLoRA / peft LoRA (target <= 1.03);
* greedy generation: CS-HLoRA / unmerged peft LoRA (target <= 1.01), per-decode-step cost;
* generation with the adapter merged for one GSD / the base model (target 1.00).

Usage::

    .venv/bin/python benchmarks/bench_cshlora.py [--steps 6] [--new-tokens 32] [--small]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from earthvlm.adapters.cshlora import CSHLoRAConfig, inject_cshlora, merge_cshlora
from earthvlm.adapters.targets import QWEN_LINEARS

TARGETS = list(QWEN_LINEARS)


def build(small: bool) -> Qwen3VLForConditionalGeneration:
    torch.manual_seed(0)
    # mrope_section sums to head_dim / 2 and, interleaved, needs 3 * w <= head_dim / 2
    hidden, layers, inter, heads = (128, 2, 256, 8) if small else (768, 8, 2048, 12)
    cfg = Qwen3VLConfig(
        text_config={
            "vocab_size": 8192, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": 4,
            "head_dim": hidden // heads,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [4, 2, 2] if small else [12, 10, 10],
                                "mrope_interleaved": True},
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": hidden, "deepstack_visual_indexes": [],
                       "num_position_embeddings": 64},
    )  # fmt: skip
    return Qwen3VLForConditionalGeneration(cfg)


def compare(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, run round-robin so that machine noise
    (other processes on these shared cores) hits every variant alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step_fn(model, ids):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--small", action="store_true", help="a tiny model for a smoke run")
    ap.add_argument("--quick", action="store_true", help="--small, 2 steps, 4 tokens (CI)")
    args = ap.parse_args()
    if args.quick:
        args.small, args.steps, args.new_tokens, args.seq = True, 2, 4, 48
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = build(args.small)
    n_params = sum(p.numel() for p in base.model.language_model.parameters())
    ids = torch.randint(0, 8000, (4, args.seq), generator=torch.Generator().manual_seed(0))
    prompt = ids[:, :32]
    s = torch.full((4,), math.log10(0.5))

    lora = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=64, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS),
    )
    gated = copy.deepcopy(base)
    ctx = inject_cshlora(gated, CSHLoRAConfig(r=64))
    ctx.set(s)
    with torch.no_grad():  # non-zero B so neither adapter is a no-op
        for m in (lora, gated):
            for name, p in m.named_parameters():
                if "lora_B" in name or "cshlora_B" in name:
                    p.normal_(0, 0.01)

    lora.train()
    gated.train()
    t = compare({"lora": train_step_fn(lora, ids), "gated": train_step_fn(gated, ids)}, args.steps)
    t_lora, t_gated = t["lora"], t["gated"]

    lora.eval()
    gated.eval()
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}

    def generate(model):
        return lambda: model.generate(input_ids=prompt, **gen)

    merged = copy.deepcopy(gated)
    merge_cshlora(merged, math.log10(0.5))
    base.eval()
    with torch.no_grad():
        g = compare(
            {"lora": generate(lora), "gated": generate(gated), "base": generate(base),
             "merged": generate(merged)},
            max(3, args.steps),
        )  # fmt: skip
    g_lora, g_gated, g_base, g_merged = g["lora"], g["gated"], g["base"], g["merged"]

    print(f"language model parameters: {n_params / 1e6:.1f} M; batch 4, seq {args.seq}, r 64")
    print(f"train step  peft LoRA {t_lora * 1e3:8.1f} ms | CS-HLoRA {t_gated * 1e3:8.1f} ms "
          f"| ratio {t_gated / t_lora:.3f} (target <= 1.03)")  # fmt: skip
    print(f"generate    peft LoRA {g_lora * 1e3:8.1f} ms | CS-HLoRA {g_gated * 1e3:8.1f} ms "
          f"| ratio {g_gated / g_lora:.3f} (target <= 1.01)")  # fmt: skip
    print(f"generate    base      {g_base * 1e3:8.1f} ms | merged   {g_merged * 1e3:8.1f} ms "
          f"| ratio {g_merged / g_base:.3f} (target 1.00)")  # fmt: skip
    print(f"unmerged peft LoRA / base in generation: {g_lora / g_base:.3f}")


if __name__ == "__main__":
    main()
