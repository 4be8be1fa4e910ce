"""Stage 2 on a mixture of two chip subsets with augmentation: counts, determinism, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earthvlm.data.augment import AugmentConfig, Augmenter
from earthvlm.data.gsd_text import with_gsd_text
from earthvlm.data.jsonl import read_records
from earthvlm.errors import EarthVLMError, SamplerError
from earthvlm.scale.tiers import tier_of
from earthvlm.synth.dataset import SynthConfig, generate_dataset
from earthvlm.train import TrainConfig, train
from earthvlm.train.config import DataConfig
from earthvlm.train.data import SamplePreparer, load_training_data, sample_gsd
from earthvlm.train.metrics import read_metrics

Make = Callable[..., TrainConfig]

#: synonyms always drawn; the chips' "small vehicle" is a DOTA class with synonyms
AUGMENT = {"synonym_prob": 1.0, "synonym_sources": {"synth": "dota"}}


@pytest.fixture(scope="module")
def mixture_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mixture of two 16-chip subsets (different seeds), 16 draws per epoch, 3:1."""
    out = tmp_path_factory.mktemp("mix")
    for name, seed in (("a", 0), ("b", 1)):
        generate_dataset(out / name, SynthConfig(n_scenes=0, n_chips=16, chip_size_px=64,
                                                 seed=seed))  # fmt: skip
    path = out / "mixture.yaml"
    path.write_text(
        f"seed: 3\nepoch_size: 16\nroot: {out}\nsubsets:\n"
        f"  - {{name: a, records: {out / 'a' / 'records.jsonl'}, weight: 3}}\n"
        f"  - {{name: b, records: {out / 'b' / 'records.jsonl'}, weight: 1}}\n"
    )
    return path


def _mixture_run(tiny_config: Make, mixture_yaml: Path, *overrides: str) -> TrainConfig:
    # 8 samples a step, 16 draws an epoch: 3 steps end epoch 0 and start epoch 1
    data: dict[str, Any] = {"records": "", "mixture": str(mixture_yaml), "augment": AUGMENT}
    return tiny_config(*overrides, data=data, optim={"max_steps": 3})


def test_a_mixture_run_with_augmentation_writes_counts_that_add_up(
    tiny_config: Make, mixture_yaml: Path
) -> None:
    cfg = _mixture_run(tiny_config, mixture_yaml)
    assert cfg.data.augment is not None and cfg.data.augment.synonym_sources == {"synth": "dota"}
    result = train(cfg)
    assert result.finished and result.step == 3
    losses = [r["loss"] for r in read_metrics(cfg.run_dir)]
    assert len(losses) == 3 and all(loss is not None for loss in losses)

    counts = json.loads((cfg.run_dir / "data_counts.json").read_text())
    assert counts["steps"] == 3 and counts["samples"] == 24
    assert [(e["epoch"], e["steps"], e["samples"]) for e in counts["epochs"]] == [
        (0, 2, 16), (1, 1, 8),
    ]  # fmt: skip
    for e in counts["epochs"]:
        plan = e["mixture"]
        assert plan["epoch"] == e["epoch"] and plan["epoch_size"] == 16
        assert sum(s["drawn"] for s in plan["subsets"].values()) == 16
        assert sum(e["subsets"].values()) == e["samples"]
        assert plan["subsets"]["a"]["read"]["ok"] == plan["subsets"]["a"]["records"] == 16
    # a whole epoch trains on exactly the mixture's draws
    epoch0 = counts["epochs"][0]
    assert epoch0["subsets"] == {n: s["drawn"] for n, s in epoch0["mixture"]["subsets"].items()}

    aug = counts["augment"]
    assert aug["seed"] == cfg.seed and aug["samples"] == 24
    ops = aug["counts"]
    # every sample was drawn for a template and for synonyms: applied or skipped, with why
    for op in ("template", "synonyms"):
        assert sum(n for k, n in ops.items() if k.split(":")[0] == op) == 24, ops
    assert ops.get("synonyms", 0) > 0  # some chips are "small vehicle"s, renamed
    run = json.loads((cfg.run_dir / "run.json").read_text())
    assert run["records"]["ok"] == 32  # both subsets' read ledgers


def test_same_seed_same_losses_and_another_seed_differs(
    tiny_config: Make, mixture_yaml: Path
) -> None:
    def losses(*overrides: str) -> list[float]:
        cfg = _mixture_run(tiny_config, mixture_yaml, *overrides)
        train(cfg)
        return [r["loss"] for r in read_metrics(cfg.run_dir)]

    first = losses("name=one")
    assert losses("name=two") == first
    assert losses("name=three", "seed=1") != first


def test_samples_are_augmented_by_key_then_given_gsd_text(mixture_yaml: Path) -> None:
    augment = AugmentConfig(**AUGMENT)
    cfg = DataConfig(mixture=str(mixture_yaml), gsd_as_text=True, augment=augment,
                     exact_share=1.0)  # fmt: skip
    data = load_training_data(cfg, batch_size=8, seed=0)
    assert data.prepare is not None and data.root == mixture_yaml.parent
    first = read_records(mixture_yaml.parent / "a" / "records.jsonl").records[0]
    assert data.records[0].messages == first.messages  # GSD text waits for augmentation

    def lay_out(prep: SamplePreparer) -> list[Any]:
        samples, idx = prep.epoch_samples(data.records, [[0, 1], [2, 3]], epoch=1,
                                          first_step=2, batch_size=2, grad_accum=2)  # fmt: skip
        assert idx == [[0, 1], [2, 3]]
        return samples

    one = lay_out(SamplePreparer(cfg, 0))
    assert one == lay_out(SamplePreparer(cfg, 0))  # the same in any process or worker
    # record 3 is slot 3 (second micro-batch, second sample) of step 2 of epoch 1
    augmented = Augmenter(augment, 0)(data.records[3], key=(1, 2, 3))
    assert one[3] == with_gsd_text(augmented)
    assert one[3] != augmented


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mixture": "m.yaml"}, r"data\.mixture='m\.yaml' with data\.records/root/synth set"),
        ({"records": "", "mixture": ""}, r"data\.mixture='': give a mixture YAML"),
        ({"records": ""}, r"data\.records is required.*data\.mixture"),
        ({"augment": {"json_prob": 2}}, r"data\.augment\.json_prob=2\.0: must be a probab"),
        ({"augment": {"synonym_sources": {"x": 1}}}, r"data\.augment\.synonym_sources\.x=1"),
        ({"augment": {"synonym_sources": {"x": "osm"}}}, r"data\.augment\.synonym_sources="),
        ({"augment": {"jsonprob": 0.1}}, r"'data\.augment\.jsonprob'; did you mean"),
        ({"augment": "on"}, r"data\.augment: expected a mapping"),
    ],
)
def test_config_errors_name_the_field(
    tiny_config: Make, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(data=data)


def test_a_missing_or_too_small_mixture_names_the_field(
    tiny_config: Make, mixture_yaml: Path, tmp_path: Path
) -> None:
    missing = tiny_config(data={"records": "", "mixture": str(tmp_path / "none.yaml")})
    with pytest.raises(EarthVLMError, match=r"data\.mixture=.*none\.yaml.*no such mixture"):
        train(missing)
    big = _mixture_run(tiny_config, mixture_yaml, "optim.grad_accum=5")  # 20 > 16 draws
    with pytest.raises(EarthVLMError, match=r"data\.mixture=.*fewer than one batch of 20"):
        train(big)


def test_an_interrupted_mixture_run_resumes_to_the_same_losses_and_draws(
    tiny_config: Make, mixture_yaml: Path, tmp_path: Path
) -> None:
    # 5 steps of 8 over 16-draw epochs: the interruption at step 3 falls inside epoch 1
    def run(folder: str, *overrides: str) -> TrainConfig:
        data = {"records": "", "mixture": str(mixture_yaml), "augment": AUGMENT}
        cfg = tiny_config(*overrides, output_dir=str(tmp_path / folder), data=data,
                          optim={"max_steps": 5})  # fmt: skip
        train(cfg)
        return cfg

    whole = run("whole")
    run("split", "stop_after=3")
    split = run("split")
    rows_whole, rows_split = read_metrics(whole.run_dir), read_metrics(split.run_dir)
    assert [r["step"] for r in rows_split] == [1, 2, 3, 4, 5]
    for key in ("loss", "loss_vlm", "lr", "grad_norm"):
        assert [r[key] for r in rows_split] == [r[key] for r in rows_whole], key
    counts_whole = json.loads((whole.run_dir / "data_counts.json").read_text())
    counts_split = json.loads((split.run_dir / "data_counts.json").read_text())
    assert counts_split["epochs"] == counts_whole["epochs"]  # the same draws, per subset
    assert counts_split["augment"] == counts_whole["augment"]


def test_mixture_batches_are_balanced_unless_shuffled(mixture_yaml: Path) -> None:
    balanced = load_training_data(DataConfig(mixture=str(mixture_yaml), exact_share=1.0,
                                             min_bins=2), batch_size=8, seed=0)  # fmt: skip
    plain = load_training_data(DataConfig(mixture=str(mixture_yaml), sampler="shuffle"),
                               batch_size=8, seed=0)  # fmt: skip
    assert balanced.sampler.gsds is not None and plain.sampler.gsds is None
    flat = plain.mixture.flat_plan().tolist()
    assert [i for b in plain.sampler for i in b] == flat  # the draws in order
    for batch in balanced.sampler:  # the same draws, arranged to span two scale tiers
        assert set(batch) <= set(flat)
        tiers = {tier_of(sample_gsd(balanced.records[i])) for i in batch}
        assert len(tiers - {None}) >= 2
    with pytest.raises(SamplerError, match=r"data\.mixture=.*every sample is exact.*shuffle"):
        load_training_data(DataConfig(mixture=str(mixture_yaml)), batch_size=8, seed=0)
