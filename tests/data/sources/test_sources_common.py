"""What every source shares: the registry, options from text, header sizes, and the rule
that every row is accounted for and every record survives the JSONL round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from earthvlm.data.jsonl import read_records, write_records
from earthvlm.data.sources import (
    SOURCES,
    SourceError,
    SourceReader,
    build_reader,
    get_source,
    list_sources,
    parse_options,
    register_source,
)
from earthvlm.data.sources._images import ImageHeaderError, image_size
from earthvlm.errors import GSDError

# -- registry ------------------------------------------------------------------------------


def test_every_registered_name_imports_its_reader() -> None:
    assert set(list_sources()) >= {
        "dota", "coco", "rsvqa-lr", "rsvqa-hr", "patternnet", "class-folders", "refgeo",
        "geochat", "vhm", "llava", "lrs-vqa", "earthmind-bench", "vrsbench",
        "xlrs-bench-lite", "omniearth-bench", "lrs-gro",
    }  # fmt: skip
    for name in list_sources():
        cls = get_source(name)
        assert issubclass(cls, SourceReader) and cls.name == name
        assert cls.task and cls.files and cls.__doc__


def test_unknown_names_and_duplicates_are_refused() -> None:
    with pytest.raises(SourceError, match="did you mean dota"):
        get_source("dotta")
    assert get_source("RSVQA_LR").name == "rsvqa-lr"  # case and underscores forgiven
    with pytest.raises(SourceError, match="already registered"):
        register_source("dota", "earthvlm.data.sources.dota:DOTA")
    with pytest.raises(SourceError, match="module:attr"):
        register_source("mine", "earthvlm.data.sources.dota")
    register_source("broken-for-test", "earthvlm.data.sources.dota:Nothing")
    try:
        with pytest.raises(SourceError, match="cannot import"):
            get_source("broken-for-test")
    finally:
        del SOURCES["broken-for-test"]


def test_the_registry_imports_lazily_and_nothing_imports_torch() -> None:
    code = (
        "import sys\n"
        "import earthvlm.data.sources as s\n"
        "assert 'earthvlm.data.sources.geochat' not in sys.modules\n"
        "for name in s.list_sources():\n"
        "    s.get_source(name)\n"
        "import earthvlm.data.sources.convert, earthvlm.cli.data\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_options_from_text() -> None:
    opts = parse_options(
        "dota", ["version=1.5", "include_difficult=false", "gsd_range_m=0.5,2", "sensor=naip"]
    )
    assert opts == {
        "version": "1.5",
        "include_difficult": False,
        "gsd_range_m": (0.5, 2.0),
        "sensor": "naip",
    }
    assert build_reader("dota", **opts).gsd_range_m == (0.5, 2.0)
    assert parse_options("lrs-vqa", ["gsd_range_m=[0.3, 0.8]"]) == {"gsd_range_m": (0.3, 0.8)}
    with pytest.raises(SourceError, match="did you mean version"):
        parse_options("dota", ["versoin=1.5"])
    with pytest.raises(SourceError, match="version='3'"):
        parse_options("dota", ["version=3"])
    with pytest.raises(SourceError, match="key=value"):
        parse_options("dota", ["version"])
    with pytest.raises(SourceError, match="did you mean style"):
        build_reader("coco", stlye="json")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"sensor": "sentinel2"}, GSDError, "did you mean sentinel-2"),
        ({"dataset": "rsvqa"}, GSDError, "no dataset-level GSD"),
        ({"gsd_range_m": (2.0, 1.0)}, GSDError, "swap the bounds"),
        ({"split": "a/b"}, ValueError, "split="),
        ({"source": "my source"}, ValueError, "source="),
    ],
)
def test_common_options_are_checked(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build_reader("coco", **options)


# -- image headers -------------------------------------------------------------------------


def test_sizes_come_from_headers(tmp_path: Path, gen: ModuleType) -> None:
    assert image_size(gen.png(tmp_path / "a.png", 7, 5)) == (7, 5)
    assert image_size(gen.jpeg(tmp_path / "b.jpg", 9, 4)) == (9, 4)
    assert image_size(gen.tiff(tmp_path / "c.tif", 3, 8)) == (3, 8)
    assert image_size(gen.geotiff(tmp_path / "d.tif", 6, 2, 1.0)) == (6, 2)
    from PIL import Image

    Image.new("RGB", (11, 3)).save(tmp_path / "e.bmp")
    assert image_size(tmp_path / "e.bmp") == (11, 3)
    Image.new("RGB", (13, 2)).save(tmp_path / "p.jpg", progressive=True)
    assert image_size(tmp_path / "p.jpg") == (13, 2)


def test_bad_headers_are_errors(tmp_path: Path, gen: ModuleType) -> None:
    good = gen.jpeg(tmp_path / "ok.jpg", 9, 4).read_bytes()
    cases = {
        "cut.jpg": good[:20],
        "empty.png": b"",
        "short.png": b"\x89PNG\r\n\x1a\n\x00\x00",
        "zero.png": gen.png(tmp_path / "z.png", 1, 1).read_bytes()[:16] + b"\x00" * 8,
        "text.jpg": b"not an image at all",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageHeaderError):
            image_size(tmp_path / name)


# -- every source ---------------------------------------------------------------------------

CASES = [
    ("dota", "write_dota", {}),
    ("coco", "write_coco", {}),
    ("rsvqa-lr", "write_rsvqa_lr", {}),
    ("rsvqa-hr", "write_rsvqa_hr", {"split": "test_phili"}),
    ("patternnet", "write_patternnet", {}),
    ("refgeo", "write_refgeo", {"subset": "dior_rsvg_test"}),
    ("geochat", "write_geochat", {}),
    ("vhm", "write_vhm", {"annotations": "cls_ucm.json"}),
    ("llava", "write_llava", {"annotations": "chat.jsonl"}),
    ("lrs-vqa", "write_lrs_vqa", {}),
    ("earthmind-bench", "write_earthmind", {"setting": "all"}),
    ("vrsbench", "write_vrsbench", {"subset": "referring"}),
]


@pytest.mark.parametrize(("name", "writer", "options"), CASES, ids=[c[0] for c in CASES])
def test_every_row_is_accounted_for_and_records_round_trip(
    tmp_path: Path, gen: ModuleType, name: str, writer: str, options: dict[str, Any]
) -> None:
    root = tmp_path / name
    if writer == "write_patternnet":
        gen.write_patternnet(root, tmp_path / "outside.jpg")
    else:
        getattr(gen, writer)(root)
    reader = build_reader(name, **options)
    records = list(reader.read(root))
    ledger = reader.ledger
    assert ledger.balanced and ledger.ok == len(records) > 0
    assert len(reader.problems) == ledger.n_failed
    for p in reader.problems:
        assert p.source == name and p.file and p.reason and p.detail and p.fix
        assert not Path(p.file).is_absolute()
    for rec in records:  # every image inside the root, with its size and a GSD state
        for im in rec.images:
            assert (root / im.path).resolve().is_relative_to(root.resolve())
            assert im.width and im.height and im.gsd.kind is not None
    out = tmp_path / "records.jsonl"
    write_records(records, out)
    back = read_records(out, root=root, must_exist=True)
    assert back.ledger.failed == {} and back.records == records
    again = build_reader(name, **options)
    assert [r.id for r in again.read(root)] == [r.id for r in records]  # deterministic
