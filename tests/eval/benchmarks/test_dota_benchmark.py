"""DOTA detection as text: the split's label files, AP_nc, difficult objects, empty images."""

from __future__ import annotations

from pathlib import Path

import pytest

from earthvlm.eval.benchmarks import BenchmarkError, build_benchmark

PLANE = "4,4,20,4,20,20,4,20 plane"
VEHICLE = "44,4,54,4,54,10,44,10 small vehicle"


def test_label_files_become_records(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("dota")
    recs = list(bench.examples(bench_data["dota"]))
    assert [r.id for r in recs] == ["dota-P0001", "dota-P0002"]
    assert dict(bench.ledger.skipped) == {"no_label_file": 1}
    assert "Classes: plane, ship" in recs[0].messages[0].text()
    assert bench.reference(recs[1]) == "There is none."


def test_ap_nc_ignores_the_difficult_plane(bench_data: dict[str, Path]) -> None:
    bench = build_benchmark("dota")
    recs = list(bench.examples(bench_data["dota"]))
    # the difficult plane is not asked for: missing it costs nothing
    result = bench.score(recs, [f"{PLANE}\n{VEHICLE}", "There is none."])
    assert result.item_scores == (1.0, 1.0) and result.headline == 1.0
    assert result.metric == "ap50_nc" and result.metrics["mf1"] == 1.0
    # plane found (AP 1), vehicle missed (AP 0); a plane invented on the empty image
    result = bench.score(recs, [f"{PLANE}\n0,50,10,50,10,60,0,60 plane", "1,1,5,1,5,5,1,5 plane"])
    assert result.item_scores == (0.5, 0.0)
    assert result.headline == 0.5 and result.metrics["empty_image_accuracy"] == 0.0
    assert {k: v.score for k, v in result.categories.items()} == {
        "plane": 1.0, "small-vehicle": 0.0}  # fmt: skip
    assert bench.reward(recs[0], None) == 0.0


def test_missing_label_folder(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"no labelTxt/ folder"):
        build_benchmark("dota").examples(tmp_path)
    with pytest.raises(ValueError, match="dota_version"):
        build_benchmark("dota", dota_version="3.0")
