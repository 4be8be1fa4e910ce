"""Accuracy of a trained run on held-out object chips, with the true and a shuffled GSD.

The preliminary micro-ScaleEarth check (docs/micro-scaleearth.md): a scale-blind stage 1
stays near 0.5 on the ambiguous pairs; a GSD-conditioned stage 2 should rise with the
true GSD and fall back with a shuffled one; a plain LoRA should not care.

    .venv/bin/python scripts/eval_chips.py RUN_DIR [--heldout DIR] [--style plain] [--n 300]
"""

from __future__ import annotations

import argparse
import collections
import random
from pathlib import Path

import torch

from earthvlm.data.collate import Collator
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.jsonl import read_records
from earthvlm.eval.choice import predict
from earthvlm.models import EarthVLM
from earthvlm.synth.chips import CHIP_CLASSES
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--heldout", type=Path, default=Path("runs/data/heldout_chips"))
    ap.add_argument("--style", default="plain")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=999)
    args = ap.parse_args()
    if not (args.heldout / "manifest.json").exists():
        generate_dataset(
            args.heldout,
            SynthConfig(n_scenes=0, n_chips=args.n, chip_style=args.style, seed=args.seed),
        )
    records = read_records(args.heldout / "records.jsonl", root=args.heldout).records
    cfg = load_config(args.run / "config.yaml")
    model = EarthVLM.load(args.run)
    collator = Collator(model.backbone, args.heldout, mode="train", max_length=512)

    def net(inputs: dict, gsds: list) -> torch.Tensor:
        return model.logits(inputs, gsds)

    shuffled = [r.images[0].gsd for r in records]
    random.Random(0).shuffle(shuffled)
    for label, gsds in (
        ("true GSD", [r.images[0].gsd for r in records]),
        ("shuffled GSD", shuffled),
    ):
        recs = [
            r.model_copy(update={"images": [r.images[0].model_copy(update={"gsd": g})]})
            for r, g in zip(records, gsds, strict=True)
        ]
        if cfg.data.gsd_as_text:  # B3: the (possibly shuffled) GSD is stated in the prompt
            recs = [with_gsd_text(r) for r in recs]
        with torch.no_grad():
            preds = predict(net, collator, recs, sorted(CHIP_CLASSES))
        acc = collections.defaultdict(list)
        for r, p in zip(records, preds, strict=True):
            pair = r.meta["ambiguous_pair"]
            acc["ambiguous pairs" if pair else "unambiguous"].append(p == r.messages[-1].text())
        print(f"{label:13s}", {k: round(sum(v) / len(v), 3) for k, v in sorted(acc.items())})


if __name__ == "__main__":
    main()
