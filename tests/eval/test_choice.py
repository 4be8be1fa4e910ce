"""Closed-set answers by teacher-forced likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from earthvlm.data.collate import Collator
from earthvlm.data.jsonl import read_records
from earthvlm.eval.choice import answer_logliks, predict, with_answer
from earthvlm.models import build_tiny_backbone
from earthvlm.synth.dataset import SynthConfig, generate_dataset

CANDIDATES = ["building", "plane", "small vehicle"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("chips")
    generate_dataset(root, SynthConfig(n_scenes=0, n_chips=3, seed=1))
    records = read_records(root / "records.jsonl", root=root).records
    bb = build_tiny_backbone("qwen3_vl", "tiny", seed=0)
    bb.model.eval()
    return bb, Collator(bb, root, mode="train", max_length=512), records


def test_logliks_equal_the_sum_over_the_answer_tokens(setup) -> None:
    bb, collator, records = setup

    def net(inputs: dict, gsds: list) -> torch.Tensor:
        return bb.model(**inputs).logits

    ll = answer_logliks(net, collator, records, CANDIDATES)
    assert ll.shape == (3, 3) and np.isfinite(ll).all() and (ll < 0).all()
    # by hand for one record and candidate: the labelled tokens' log-probabilities
    batch = collator([with_answer(records[0], "plane")])
    inputs = dict(batch.inputs)
    labels = inputs.pop("labels")[0]
    with torch.no_grad():
        logp = torch.log_softmax(bb.model(**inputs).logits[0].float(), -1)
    pos = (labels != -100).nonzero().flatten()
    manual = sum(logp[p - 1, labels[p]].item() for p in pos)
    assert ll[0, 1] == pytest.approx(manual, abs=1e-4)


def test_predict_picks_the_most_likely_candidate(setup) -> None:
    bb, collator, records = setup
    bias = torch.zeros(bb.model.config.text_config.vocab_size)
    favoured = bb.tokenizer("small vehicle", add_special_tokens=False)["input_ids"]
    bias[favoured] = 50.0  # make "small vehicle" overwhelmingly likely

    def net(inputs: dict, gsds: list) -> torch.Tensor:
        return bb.model(**inputs).logits + bias

    assert predict(net, collator, records, CANDIDATES, batch_size=2) == ["small vehicle"] * 3


def test_records_without_an_assistant_turn_are_refused(setup) -> None:
    from earthvlm.errors import EarthVLMError

    _, _, records = setup
    rec = records[0].model_copy(update={"messages": records[0].messages[:1]})
    with pytest.raises(EarthVLMError, match="no assistant turn"):
        with_answer(rec, "plane")


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_vision_cache_gives_the_same_numbers_with_one_vision_pass(tmp_path, family) -> None:
    """The scorer reuses the vision tower's output across candidates and GSDs: the
    log-likelihoods equal a pass without the cache (CS-HLoRA + SSE-U, whose pooling
    hook on the tower must still see every call), and the tower runs once per batch."""
    from earthvlm.eval.choice import ChoiceScorer, VisionCache
    from earthvlm.models import EarthVLM
    from earthvlm.models.recipe import AdapterConfig, ModelConfig, ModelRecipe
    from earthvlm.scale.gsd import GSD

    generate_dataset(tmp_path, SynthConfig(n_scenes=0, n_chips=6, chip_style="plain", seed=2))
    records = read_records(tmp_path / "records.jsonl", root=tmp_path).records
    recipe = ModelRecipe(
        stage=2, model=ModelConfig(family=family), adapter=AdapterConfig(kind="cshlora", r=4)
    )
    model = EarthVLM.build(recipe, name="cs")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "cshlora_B" in name:  # non-zero: the GSD changes the answer
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    assert VisionCache.applies(model)
    candidates = sorted({r.messages[-1].text() for r in records})
    sweeps = [[GSD.exact(g)] * len(records) for g in (0.1, 1.0, 10.0)]

    plain = ChoiceScorer(model, tmp_path, candidates, batch_size=4)
    plain._vision = None  # no cache
    want = [plain.logliks(records, gs) for gs in sweeps]
    cached = ChoiceScorer(model, tmp_path, candidates, batch_size=4)
    got = [cached.logliks(records, gs) for gs in sweeps]
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(got[0], got[2])  # the GSD does reach the answer
    cache = cached._vision_cache()
    assert cache.misses == 2  # two batches of images, each seen by the tower once
    assert cache.hits == 3 * len(candidates) * 2 - 2
    assert len(cache.positions) == 2 * len(candidates)  # one per candidate batch
    assert "forward" not in model.hf_model.model.visual.__dict__  # uninstalled after use
    assert "compute_3d_position_ids" not in model.hf_model.model.__dict__
