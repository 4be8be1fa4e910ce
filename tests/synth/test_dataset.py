"""The dataset writer: files, records, GSD read back from every file, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio

from earthvlm.data.jsonl import read_records
from earthvlm.scale.resolve import resolve_gsd
from earthvlm.synth.dataset import SynthConfig, generate_dataset

CFG = SynthConfig(n_scenes=12, n_chips=12, views=("optical", "sar", "ms"), cloud_prob=0.5, seed=7)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, CFG)
    return out


def test_records_are_valid_and_point_at_existing_files(dataset: Path) -> None:
    rs = read_records(dataset / "records.jsonl", root=dataset, must_exist=True)
    assert rs.ledger.failed == {} and rs.ledger.ok == rs.ledger.read > 12
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["records"] == rs.ledger.ok
    assert manifest["images"] == 12 * 3 + 12
    assert manifest["config"]["seed"] == 7 and manifest["version"]
    assert sum(manifest["per_tier"].values()) == 24
    tasks = {r.task for r in rs.records}
    assert {"classification", "vqa"} <= tasks


def test_gsd_read_back_from_every_file_matches_the_record(dataset: Path) -> None:
    rs = read_records(dataset / "records.jsonl", root=dataset)
    recorded: dict[str, float] = {}
    for rec in rs.records:
        for rel in [rec.images[0].path, *rec.meta.get("views", {}).values()]:
            recorded[rel] = rec.images[0].gsd.point_m
    files = sorted((dataset / "images").glob("*.tif"))
    assert len(files) == 48
    for path in files:
        rel = f"images/{path.name}"
        assert rel in recorded, f"{rel}: written but no record refers to it"
        res = resolve_gsd(path)
        assert res.decided_by == "georef"
        assert res.gsd.point_m == pytest.approx(recorded[rel], rel=1e-5), rel


def test_views_are_co_registered(dataset: Path) -> None:
    for i in range(3):
        profiles = []
        for view, bands in (("optical", 3), ("sar", 1), ("ms", 10)):
            with rasterio.open(dataset / "images" / f"scene-{i:06d}_{view}.tif") as ds:
                assert ds.count == bands
                profiles.append((ds.width, ds.height, ds.crs, tuple(ds.transform)))
        assert profiles[0] == profiles[1] == profiles[2]


def test_chips_are_balanced_and_ambiguous_pairs_marked(dataset: Path) -> None:
    rs = read_records(dataset / "records.jsonl", root=dataset)
    chips = [r for r in rs.records if r.meta.get("mode") == "chip"]
    answers = [r.messages[-1].text() for r in chips]
    assert len(chips) == 12 and len(set(answers)) == 6
    assert all(answers.count(a) == 2 for a in set(answers))
    pairs = {tuple(r.meta["ambiguous_pair"]) for r in chips if r.meta["ambiguous_pair"]}
    assert pairs == {("building", "small vehicle"), ("roundabout", "storage tank")}


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    cfg = SynthConfig(n_scenes=4, n_chips=3, views=("optical", "sar"), cloud_prob=0.5, seed=3)
    a, b = tmp_path / "a", tmp_path / "b"
    generate_dataset(a, cfg)
    generate_dataset(b, cfg)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 10
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    generate_dataset(c, SynthConfig(n_scenes=4, n_chips=3, views=("optical", "sar"), seed=4))
    assert (c / "records.jsonl").read_bytes() != (a / "records.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_scenes": 0, "n_chips": 0}, "nothing to generate"),
        ({"gsd_range_m": (0.01, 5.0)}, "gsd_range_m"),
        ({"views": ("optical", "lidar")}, "views"),
        ({"cloud_prob": 1.5}, "cloud_prob"),
        ({"kinds": ("moon",)}, "kinds"),
        ({"size_px": 8}, "size_px"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SynthConfig(**kwargs)


def test_a_held_out_set_says_its_split(tmp_path: Path) -> None:
    generate_dataset(tmp_path, SynthConfig(n_scenes=0, n_chips=3, seed=1, split="test"))
    records = read_records(tmp_path / "records.jsonl", root=tmp_path).records
    assert {r.split for r in records} == {"test"}
    with pytest.raises(ValueError, match="split"):
        SynthConfig(n_chips=1, split="held out")
