"""The online mixture: YAML config, seeded draws, weights per epoch, counts."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from earthvlm.data.jsonl import write_records
from earthvlm.data.mixture import (
    Mixture,
    MixtureBatches,
    MixtureConfig,
    SubsetConfig,
    load_mixture_config,
    mixture_from_dict,
)
from earthvlm.data.record import ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.errors import SamplerError
from earthvlm.scale.gsd import GSD, GSDKind
from earthvlm.scale.tiers import tier_of

REPO = Path(__file__).resolve().parents[2]
#: Standard errors allowed between a subset's count and its expectation. A fixed seed
#: makes each check deterministic; for a fresh seed a 4-sigma miss has probability
#: ~6e-5 per check (normal approximation of the binomial).
Z = 4.0


def _records(name: str, n: int) -> list[Record]:
    return [
        Record(
            id=f"{name}-{i}",
            task="vqa",
            source=name,
            images=[ImageRef(path=f"images/{i}.png", width=8, height=8)],
            messages=[
                Message(role="user", content=[ImagePart(index=0), TextPart(text="Q?")]),
                Message(role="assistant", content="A"),
            ],
        )
        for i in range(n)
    ]


def _mixture(weights: dict[str, float] | None, sizes: dict[str, int], **kw) -> Mixture:
    subsets = tuple(
        SubsetConfig(
            name=n,
            records=f"{n}.jsonl",
            root=".",
            weight=None if weights is None else weights[n],
            **kw.pop(n, {}),
        )
        for n in sizes
    )
    config = MixtureConfig(subsets=subsets, **kw)
    return Mixture(config, [_records(n, k) for n, k in sizes.items()])


def _draws(m: Mixture) -> list[tuple[str, int]]:
    return [(it.subset, it.index) for it in m]


def test_example_yaml_parses() -> None:
    cfg = load_mixture_config(REPO / "configs" / "mixtures" / "example.yaml")
    assert cfg.names == ["dota", "refgeo", "rsvqa", "patternnet"]
    assert cfg.subsets[2].subsample == 0.25 and cfg.subsets[3].repeat == 2
    assert cfg.schedule[0].epoch == 2 and cfg.schedule[0].weights["dota"] == 3.0


def test_same_seed_same_stream_and_different_seed_or_epoch_differs() -> None:
    sizes = {"a": 50, "b": 30, "c": 20}
    w = {"a": 1.0, "b": 1.0, "c": 2.0}
    one, two = _mixture(w, sizes, seed=7), _mixture(w, sizes, seed=7)
    assert _draws(one) == _draws(two)
    assert _draws(one) != _draws(_mixture(w, sizes, seed=8))
    first = _draws(one)
    one.set_epoch(1)
    assert _draws(one) != first
    one.set_epoch(0)  # going back reproduces the epoch exactly
    assert _draws(one) == first
    assert one[5].record == two[5].record  # indexing by position (DataLoader workers)


def test_empirical_mix_matches_weights_within_binomial_error() -> None:
    weights = {"a": 5.0, "b": 3.0, "c": 1.5, "d": 0.5}
    n = 20_000
    m = _mixture(weights, {"a": 40, "b": 40, "c": 40, "d": 40}, epoch_size=n, seed=3)
    total = sum(weights.values())
    for epoch in range(5):  # five independent streams
        drawn = m.counts(epoch)["subsets"]
        for name, w in weights.items():
            p = w / total
            se = math.sqrt(n * p * (1 - p))
            assert abs(drawn[name]["drawn"] - n * p) <= Z * se, (epoch, name, drawn[name])


def test_weights_change_between_epochs_without_rebuilding() -> None:
    m = _mixture({"a": 1.0, "b": 1.0}, {"a": 20, "b": 20}, epoch_size=200)
    epoch0 = m.plan(0).copy()
    kept = m[0].record
    m.set_epoch(1)
    m.set_weights({"a": 0.0, "b": 1.0})
    assert {it.subset for it in m} == {"b"}
    m.set_epoch(3)  # weights stay in force until changed again
    assert m.probabilities() == {"a": 0.0, "b": 1.0}
    assert np.array_equal(m.plan(0), epoch0)  # earlier epochs are unchanged
    m.set_epoch(0)
    assert m[0].record is kept  # the same record objects: nothing was re-read


def test_schedule_applies_from_its_epoch_on() -> None:
    cfg = mixture_from_dict(
        {
            "subsets": [
                {"name": "a", "records": "a.jsonl", "weight": 1},
                {"name": "b", "records": "b.jsonl", "weight": 3},
            ],
            "schedule": [{"epoch": 2, "weights": {"a": 1, "b": 1}}],
        }
    )
    m = Mixture(cfg, [_records("a", 5), _records("b", 5)])
    assert m.probabilities(1) == {"a": 0.25, "b": 0.75}
    assert m.probabilities(2) == m.probabilities(9) == {"a": 0.5, "b": 0.5}


def test_without_weights_the_mix_follows_size_with_repeat() -> None:
    m = _mixture(None, {"a": 100, "b": 50}, b={"repeat": 2})
    assert m.sizes() == {"a": 100, "b": 100}
    assert m.probabilities() == {"a": 0.5, "b": 0.5}
    assert len(m) == 200  # default epoch size: the sizes summed


def test_subsample_is_seeded_and_fixed_across_epochs() -> None:
    m = _mixture({"a": 1.0}, {"a": 100}, a={"subsample": 0.25}, epoch_size=400)
    pools = [set(m.plan(e)[:, 1].tolist()) for e in range(3)]
    assert len(pools[0]) == 25 and pools[0] == pools[1] == pools[2]
    again = _mixture({"a": 1.0}, {"a": 100}, a={"subsample": 0.25}, epoch_size=400)
    assert set(again.plan(0)[:, 1].tolist()) == pools[0]
    other = _mixture({"a": 1.0}, {"a": 100}, a={"subsample": 0.25}, epoch_size=400, seed=1)
    assert set(other.plan(0)[:, 1].tolist()) != pools[0]


def test_a_subset_drawn_less_than_its_size_repeats_no_record() -> None:
    m = _mixture({"a": 1.0, "b": 1.0}, {"a": 500, "b": 500}, epoch_size=400)
    for name, c in m.counts()["subsets"].items():
        assert c["distinct"] == c["drawn"], name
    # drawn more often than its size: every record before any repeats twice
    m = _mixture({"a": 1.0}, {"a": 10}, epoch_size=25)
    counts = np.bincount(m.plan()[:, 1], minlength=10)
    assert counts.min() >= 2 and counts.max() <= 3


def test_counts_print_and_save(tmp_path: Path) -> None:
    m = _mixture({"a": 2.0, "b": 1.0}, {"a": 30, "b": 10}, b={"subsample": 0.5})
    c = m.counts()
    assert set(c) == {"epoch", "seed", "epoch_size", "subsets"}
    assert c["subsets"]["b"]["pool"] == 5 and c["subsets"]["b"]["records"] == 10
    assert sum(s["drawn"] for s in c["subsets"].values()) == len(m)
    m.save_counts(tmp_path / "counts.json")
    assert json.loads((tmp_path / "counts.json").read_text()) == c
    text = m.summary()
    assert "a: drawn" in text and "b: drawn" in text


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"subsets": [{"name": "a", "records": "x", "weight": -1}]}, r"subset 'a': weight=-1"),
        ({"subsets": [{"name": "a", "records": "x", "repeat": 0}]}, r"subset 'a': repeat=0"),
        (
            {"subsets": [{"name": "a", "records": "x", "repeat": 1.5}]},
            r"subsets\[0\]\.repeat=1\.5: expected an integer \(subsets\[0\] is 'a'\)",
        ),
        (
            {"subsets": [{"name": "a", "records": "x", "subsample": 1.5}]},
            r"subset 'a': subsample=1.5",
        ),
        (
            {"subsets": [{"name": "a", "records": "x", "wieght": 1}]},
            r"unknown config key 'subsets\[0\]\.wieght'; did you mean 'subsets\[0\]\.weight'",
        ),
        ({"subsets": [{"name": "a"}]}, r"config is missing \['subsets\[0\]\.records'\]"),
        (
            {
                "subsets": [
                    {"name": "a", "records": "x", "weight": 1},
                    {"name": "b", "records": "y"},
                ]
            },
            r"not for \['b'\]",
        ),
        (
            {"subsets": [{"name": "a", "records": "x"}, {"name": "a", "records": "y"}]},
            r"unique; repeated: \['a'\]",
        ),
        (
            {
                "subsets": [{"name": "a", "records": "x", "weight": 1}],
                "schedule": [{"epoch": 1, "weights": {"a": 1, "zz": 2}}],
            },
            r"schedule\[0\] \(epoch 1\): weights name unknown subset 'zz'",
        ),
        (
            {
                "subsets": [
                    {"name": "a", "records": "x", "weight": 1},
                    {"name": "b", "records": "y", "weight": 1},
                ],
                "schedule": [{"epoch": 1, "weights": {"a": 1}}],
            },
            r"schedule\[0\] \(epoch 1\): weights miss subset\(s\) \['b'\]",
        ),
        ({"subsets": [{"name": "a", "records": "x"}], "epoch_size": 0}, r"epoch_size=0"),
        ({"subsets": []}, r"subsets"),
        ({"subsets": [{"name": "a", "records": "x"}], "sed": 1}, r"did you mean 'seed'"),
    ],
)
def test_validation_errors_name_the_subset_and_field(data: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mixture_from_dict(data)


def test_set_weights_and_empty_subsets_are_checked() -> None:
    m = _mixture({"a": 1.0, "b": 1.0}, {"a": 5, "b": 5})
    with pytest.raises(ValueError, match=r"set_weights \(epoch 0\): weights miss .*'b'"):
        m.set_weights({"a": 1.0})
    with pytest.raises(ValueError, match=r"subset 'b': weight=-2"):
        m.set_weights({"a": 1.0, "b": -2})
    with pytest.raises(ValueError, match=r"\['b'\] have a weight > 0 but no records"):
        _mixture({"a": 1.0, "b": 1.0}, {"a": 5, "b": 0})
    assert len(_mixture({"a": 1.0, "b": 0.0}, {"a": 5, "b": 0})) == 5


def test_from_yaml_reads_records_and_rebases_image_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name, n in (("a", 3), ("b", 2)):
        (data / name).mkdir(parents=True)
        write_records(_records(name, n), data / name / "train.jsonl")
    (data / "b" / "train.jsonl").open("a").write("not json\n")  # one quarantined row
    yaml_path = tmp_path / "mix.yaml"
    yaml_path.write_text(
        "seed: 1\nsubsets:\n"
        "  - {name: a, records: data/a/train.jsonl, root: data/a, weight: 1}\n"
        "  - {name: b, records: data/b/train.jsonl, weight: 1}\n"
    )
    m = Mixture.from_yaml(yaml_path, base_dir=tmp_path)
    assert Path(m.root) == data  # the subsets' common folder
    paths = {it.record.images[0].path.split("/")[0] for it in m}
    assert paths == {"a", "b"}
    assert all((data / it.record.images[0].path).parent == data / it.subset / "images" for it in m)
    read = m.counts()["subsets"]["b"]["read"]
    assert read["ok"] == 2 and read["failed"] == {"invalid_json": 1}

    outside = mixture_from_dict(
        {
            "root": str(data / "a"),
            "subsets": [
                {"name": "a", "records": str(data / "a" / "train.jsonl")},
                {"name": "b", "records": str(data / "b" / "train.jsonl")},
            ],
        }
    )
    with pytest.raises(ValueError, match=r"subset 'b': root=.* outside the mixture root"):
        Mixture.from_config(outside)


def test_batches_of_flat_indices_follow_the_plan() -> None:
    m = _mixture({"a": 1.0, "b": 2.0}, {"a": 7, "b": 5}, epoch_size=50)
    batches = MixtureBatches(m, batch_size=8)
    batches.set_epoch(2)
    got = list(batches)
    assert len(got) == len(batches) == 6 and all(len(b) == 8 for b in got)
    records = m.records()
    flat = [records[i] for b in got for i in b]
    assert [(r.source, r.id) for r in flat] == [
        (it.subset, it.record.id) for it in list(m)[:48]
    ]  # the same draws as iterating the epoch
    assert [list(b) for b in MixtureBatches(m, 8)] == got  # same epoch, same batches
    with pytest.raises(ValueError, match=r"fewer than one batch of 64"):
        MixtureBatches(m, 64)


def test_balanced_batches_keep_the_exact_share_and_bins_over_the_draws() -> None:
    # "aerial" records carry exact GSDs in two tiers; "sat" ones only a range or nothing
    sizes = {"aerial": 40, "sat": 60}
    m = _mixture({"aerial": 1.0, "sat": 1.0}, sizes, epoch_size=96, seed=3)
    gsds = [GSD.exact(0.3 if i % 2 else 2.0) for i in range(40)]
    gsds += [GSD.range(5.0, 15.0) if i % 3 else GSD.unknown("no metadata") for i in range(60)]
    batches = MixtureBatches(m, 8, gsds=gsds, exact_share=0.25, min_bins=2, seed=1)
    batches.set_epoch(1)
    got = list(batches)
    assert len(got) == len(batches) == 12 and all(len(b) == 8 for b in got)
    drawn = Counter(m.flat_plan().tolist())
    for b in got:
        assert sum(gsds[i].kind is GSDKind.EXACT for i in b) == 2  # 0.25 x 8
        bins = {tier_of(gsds[i]) for i in b} - {None}
        assert len(bins) >= 2
        assert all(i in drawn for i in b)  # only the epoch's draws are used
    # exact slots follow the draws of exact records: no exact record repeats before
    # every exact draw of the epoch is used (24 exact slots, ~48 exact draws)
    exact_used = [i for b in got for i in b if gsds[i].kind is GSDKind.EXACT]
    assert len(exact_used) == 24
    assert all(Counter(exact_used)[i] <= drawn[i] for i in exact_used)
    assert [list(b) for b in MixtureBatches(m, 8, gsds=gsds, seed=1)] == got  # seeded
    assert list(MixtureBatches(m, 8, gsds=gsds, seed=2)) != got
    with pytest.raises(ValueError, match="one per record"):
        MixtureBatches(m, 8, gsds=gsds[:10])
    with pytest.raises(SamplerError, match="has none"):  # no exact record was drawn
        MixtureBatches(m, 8, gsds=[GSD.unknown("x")] * 100)
