"""EarthMind-Bench -> MCQ, open-ended and segmentation records in the three settings;
masks from polygons and compressed RLE; malformed rows quarantined with reasons."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from earthvlm.data.sources import SourceError, build_reader
from earthvlm.data.sources._masks import (
    MaskFormatError,
    decode_segmentation,
    encode_rle,
    load_plain_pickle,
)
from earthvlm.data.sources.earthmind import candidate_label, release_image_name, task_name


def test_fused_records_carry_optical_then_sar(earthmind_root: Path) -> None:
    reader = build_reader("earthmind-bench")
    recs = {r.id: r for r in reader.read(earthmind_root)}
    assert sorted(recs) == [
        "earthmind-bench-fused-Navigation_all_unmatched-0",
        "earthmind-bench-fused-caption_all_unmatched-0",
        "earthmind-bench-fused-object_counting_all_unmatched-0",
        "earthmind-bench-fused-object_existence_all_unmatched-0",
        "earthmind-bench-fused-object_existence_all_unmatched-1",
        "earthmind-bench-fused-seg-1-0",
        "earthmind-bench-fused-seg-1-1",
        "earthmind-bench-fused-seg-2-0",
    ]
    mcq = recs["earthmind-bench-fused-object_existence_all_unmatched-0"]
    assert [(i.path, i.modality, i.width, i.height) for i in mcq.images] == [
        ("rgb/img/0001.png", "optical", 16, 12),
        ("sar/img/0001.png", "sar", 16, 12),
    ]
    assert mcq.task == "mcq" and mcq.split == "test"
    assert [p.type for p in mcq.messages[0].content] == ["image", "image", "text"]  # type: ignore[union-attr]
    assert mcq.messages[0].text().startswith("Is there a bridge in the image?\nA. Yes\nB. No\n")
    assert mcq.messages[1].content == "A"
    assert mcq.meta["task"] == "object_existence" and mcq.meta["kind"] == "mcq"
    route = recs["earthmind-bench-fused-Navigation_all_unmatched-0"]
    assert route.task == "vqa" and route.meta["task"] == "route_planning"
    assert route.messages[0].text() == "Plan a route from the port to the bridge."
    seg = recs["earthmind-bench-fused-seg-1-1"]
    assert seg.task == "segmentation" and seg.meta["sentence"] == "the water body"
    assert seg.messages[0].text().startswith("Please segment the water body in this image.")
    assert seg.messages[1].content == "[[[1, 1], [5, 1], [5, 4], [1, 4]]]"
    led = reader.ledger
    assert (led.read, led.ok, dict(led.skipped)) == (14, 8, {"other_split": 1})
    assert {(p.file, p.row): p.reason for p in reader.problems} == {
        ("formal_data_test/caption_all_unmatched.json", 1): "not_an_object",
        ("formal_data_test/object_counting_all_unmatched.json", 1): "missing_image",
        ("formal_data_test/object_existence_all_unmatched.json", 2): "answer_not_a_candidate",
        ("formal_data_test/object_existence_all_unmatched.json", 3): "missing_field:question",
        ("Refer_Segm/sarnew/refs(unc).p", "3.0"): "unknown_ann_id",
    }


def test_settings_pick_the_views(earthmind_root: Path) -> None:
    opt = list(build_reader("earthmind-bench", setting="optical").read(earthmind_root))
    sar = list(build_reader("earthmind-bench", setting="sar").read(earthmind_root))
    assert {tuple(i.modality for i in r.images) for r in opt} == {("optical",)}
    assert {tuple(i.modality for i in r.images) for r in sar} == {("sar",)}
    assert {i.path for r in sar for i in r.images} >= {
        "sar/img/0001.png",
        "Refer_Segm/sarnew/sar/0005.png",
    }
    every = list(build_reader("earthmind-bench", setting="all").read(earthmind_root))
    assert len(every) == 3 * 8 and {r.meta["setting"] for r in every} == {"optical", "sar", "fused"}
    only = build_reader("earthmind-bench", tasks=("Navigation",))
    assert [r.meta["task"] for r in only.read(earthmind_root)] == ["route_planning"]
    assert only.ledger.skipped["other_task"] == 6  # the segmentation files are not read
    with pytest.raises(ValueError, match="setting='rgb'"):
        build_reader("earthmind-bench", setting="rgb")


def test_reference_masks_decode_polygons_and_compressed_rle(earthmind_root: Path, gen) -> None:
    recs = {r.id: r for r in build_reader("earthmind-bench").read(earthmind_root)}
    poly = recs["earthmind-bench-fused-seg-1-0"].masks[0]
    assert (poly.label, poly.image, poly.rle["size"]) == ("the pond", 0, [6, 8])
    m = decode_segmentation(poly.rle, 6, 8)
    assert m.sum() == 12 and m[1:4, 1:5].all()  # a 4 x 3 rectangle fills 4 x 3 pixels
    rle = recs["earthmind-bench-fused-seg-2-0"].masks[0].rle
    m = decode_segmentation(rle, 6, 8)
    assert np.argwhere(m).tolist() == [[2, 6], [3, 6], [4, 6]]
    assert encode_rle(m)["counts"] == gen.EARTHMIND_RLE_COUNTS


def test_rle_round_trip_and_refusals() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((7, 5)) > 0.5
    assert (decode_segmentation(encode_rle(mask), 7, 5) == mask).all()
    with pytest.raises(MaskFormatError, match="sum to"):
        decode_segmentation({"size": [2, 2], "counts": [1, 1]}, 2, 2)
    with pytest.raises(MaskFormatError, match="RLE size"):
        decode_segmentation(encode_rle(mask), 5, 7)
    with pytest.raises(MaskFormatError, match="three"):
        decode_segmentation([[0, 0, 1, 1]], 4, 4)


_SHARED: list = []
#: Damaged or hostile refs pickles, one per kind: (name, bytes, words of the error).
BAD_PICKLES = [
    ("class_reference", pickle.dumps([Path("x")]), "only plain"),
    ("reduce_without_a_class", b"(S'x'\ntR.", "builds or calls"),
    ("shared_container", pickle.dumps([_SHARED, _SHARED], protocol=2), "two places"),
    # what the C unpickler raised past the reader (or allocated, for the memo index)
    ("append_to_a_dict", b"\x80\x02}K\x01a.", "AttributeError"),
    ("missing_memo_entry", b"\x80\x02h\x07.", "Memo value not found"),
    ("unhashable_key", b"\x80\x02}]K\x01s.", "TypeError"),
    ("long_of_5000_digits", b"L" + b"9" * 5000 + b"L\n.", "ValueError"),
    ("bad_utf8", b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "UnicodeDecodeError"),
    ("truncated", pickle.dumps([{"ref_id": 1}], protocol=2)[:-3], "not a readable pickle"),
    ("unknown_opcode", b"\x80\x02\xf0.", "KeyError"),
]


@pytest.mark.parametrize(("name", "data", "words"), BAD_PICKLES, ids=[b[0] for b in BAD_PICKLES])
def test_a_bad_refs_pickle_is_refused_naming_the_file(
    tmp_path: Path, name: str, data: bytes, words: str
) -> None:
    path = tmp_path / "refs(unc).p"
    path.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match=words) as info:
        load_plain_pickle(path)
    assert "refs(unc).p" in str(info.value)


@pytest.mark.parametrize(
    ("name", "data", "words"), BAD_PICKLES[:5], ids=[b[0] for b in BAD_PICKLES[:5]]
)
def test_a_bad_refs_pickle_is_quarantined_and_the_rest_read(
    earthmind_root: Path, name: str, data: bytes, words: str
) -> None:
    refs = earthmind_root / "Refer_Segm/sarnew/refs(unc).p"
    assert load_plain_pickle(refs)[0]["ref_id"] == 1
    refs.write_bytes(data)
    reader = build_reader("earthmind-bench")
    recs = [r.id for r in reader.read(earthmind_root)]
    assert len(recs) == 5 and not any("-seg-" in r for r in recs)  # the other tasks
    problems = {(p.file, p.row): p for p in reader.problems}
    bad = problems[("Refer_Segm/sarnew/refs(unc).p", 0)]
    assert bad.reason == "bad_pickle" and "re-download" in bad.fix
    assert reader.ledger.balanced


def test_a_huge_memo_index_allocates_nothing(tmp_path: Path) -> None:
    # LONG_BINPUT 0xffffffff: CPython's C unpickler sizes its memo array by the index
    # (64 GiB, cleared); the pure-Python one used here keeps a dict
    path = tmp_path / "refs(unc).p"
    path.write_bytes(b"\x80\x02]r\xff\xff\xff\xff.")
    assert load_plain_pickle(path) == []


def test_refs_that_are_not_a_list_are_quarantined(earthmind_root: Path) -> None:
    (earthmind_root / "Refer_Segm/sarnew/refs(unc).p").write_bytes(pickle.dumps({"a": 1}))
    reader = build_reader("earthmind-bench")
    assert len(list(reader.read(earthmind_root))) == 5
    assert {p.reason for p in reader.problems} >= {"bad_refs"}


def test_names_labels_and_images() -> None:
    assert task_name("Navigation") == "route_planning"
    assert task_name("object counting") == "object_counting"
    assert task_name("disaster_all_unmatched") == "disaster_forecasting"
    assert task_name("traffic flow") == "traffic_flow"
    assert [candidate_label(c) for c in ("A. Yes", "(B) no", "c) 3", "Yes")] == [
        "A",
        "B",
        "C",
        None,
    ]
    assert release_image_name("0001.json") == "0001.png"
    assert release_image_name("x/0001.tif") == "x/0001.tif"


def test_missing_annotation_folder_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="formal_data_test"):
        list(build_reader("earthmind-bench").read(tmp_path))


def test_an_answer_may_be_the_candidate_or_its_letter(tmp_path: Path, gen) -> None:
    gen.png(tmp_path / "rgb" / "img" / "7.png", 8, 8)
    gen.grey_png(tmp_path / "sar" / "img" / "7.png", 8, 8)
    rows = [
        {"file_name": "7.json", "question": "q", "candidate": ["A. x", "B. y"], "answer": a,
         "task_type": "object existence"}
        for a in ("(B)", "b.", "B. y", "b. Y", "y", "C")
    ]  # fmt: skip
    (tmp_path / "formal_data_test").mkdir()
    (tmp_path / "formal_data_test" / "t.json").write_text(json.dumps(rows), encoding="utf-8")
    reader = build_reader("earthmind-bench")
    got = [r.messages[1].content for r in reader.read(tmp_path)]
    assert got == ["(B)", "b.", "B. y", "b. Y", "y"]
    assert [p.reason for p in reader.problems] == ["answer_not_a_candidate"]


def test_three_band_sar_is_refused_unless_fed_as_rgb(earthmind_root: Path, gen) -> None:
    gen.png(earthmind_root / "sar" / "img" / "0001.png", 16, 12, 3)  # RGB, not one band
    reader = build_reader("earthmind-bench", setting="sar", tasks=("caption",))
    assert list(reader.read(earthmind_root)) == []
    reasons = [p.reason for p in reader.problems]
    assert reasons.count("sar_not_one_or_two_bands") == 1 and "missing_image" not in reasons
    rgb = build_reader("earthmind-bench", setting="sar", tasks=("caption",), sar_modality="optical")
    assert [r.images[0].modality for r in rgb.read(earthmind_root)] == ["optical"]
