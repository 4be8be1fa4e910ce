"""Writing a synthetic dataset: GeoTIFF views, instance masks, records JSONL, manifest.

Every image is a GeoTIFF in UTM zone 33N whose centre lies on the central meridian, with
the grid pixel set to ``gsd * 0.9996`` so that the ground distance between pixel
centres there is exactly the GSD: the GSD resolver recovers from each file the value its
record stores. Same config and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm import __version__
from earthvlm.data.jsonl import write_records
from earthvlm.data.record import Box, ImagePart, ImageRef, Mask, Message, Record, TextPart
from earthvlm.geo.raster import write_geotiff
from earthvlm.io import atomic_write_text
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.scale.tiers import DEFAULT_TIERS
from earthvlm.synth import questions
from earthvlm.synth.chips import CHIP_CLASSES, render_chip
from earthvlm.synth.georef import UTM_CRS, utm_transform
from earthvlm.synth.labels import ObjectLabel, instance_mask, label_scene
from earthvlm.synth.materials import BANDS
from earthvlm.synth.questions import GENERATORS, QA
from earthvlm.synth.render import (
    SAR_DB_MIN,
    SAR_DB_SPAN,
    Canvas,
    cloud_alpha,
    multispectral_view,
    optical_view,
    sar_view,
)
from earthvlm.synth.scene import SCENE_KINDS, generate_scene
from earthvlm.synth.uhr import UHR_KINDS, write_uhr_scene

VIEWS = ("optical", "sar", "ms")
#: GSDs of UHR scenes (metres): targets of a few metres need sub-metre pixels.
UHR_GSD_RANGE_M = (0.15, 0.6)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        n_scenes: Scene images (each yields several questions).
        n_chips: Object chips (one centred object; the scale experiment's data).
        size_px: Scene image side in pixels.
        chip_size_px: Chip side in pixels.
        chip_style: ``textured`` or ``plain`` chips (see :func:`~earthvlm.synth.chips.render_chip`).
        gsd_range_m: Scene GSDs are drawn log-uniformly from this range.
        views: Which views to write: ``optical``, ``sar``, ``ms``.
        cloud_prob: Chance that a scene's optical/MS views are partly under cloud.
        kinds: Scene kinds to draw from.
        seed: Seed of everything.
        n_uhr: Ultra-high-resolution scenes (``images/uhr-XXXX.tif``, tiled with
            overviews; see :mod:`earthvlm.synth.uhr`). Their kind is drawn from the UHR
            kinds in ``kinds`` (all of them when none is), their GSD log-uniformly from
            :data:`UHR_GSD_RANGE_M` clipped to ``gsd_range_m``.
        uhr_size_px: UHR scene side in pixels (2048..32768).
        split: The records' ``split`` (``train``, ``val``, ``test``): a held-out set
            generated with another seed says so.
    """

    n_scenes: int = 64
    n_chips: int = 0
    size_px: int = 128
    chip_size_px: int = 64
    chip_style: str = "textured"
    gsd_range_m: tuple[float, float] = (0.05, 30.0)
    views: tuple[str, ...] = ("optical",)
    cloud_prob: float = 0.0
    kinds: tuple[str, ...] = SCENE_KINDS
    seed: int = 0
    n_uhr: int = 0
    uhr_size_px: int = 8192
    split: str = "train"

    def __post_init__(self) -> None:
        if self.n_scenes < 0 or self.n_chips < 0 or self.n_uhr < 0:
            raise ValueError("n_scenes, n_chips and n_uhr must be >= 0")
        if self.n_scenes + self.n_chips + self.n_uhr == 0:
            raise ValueError("nothing to generate: set n_scenes, n_chips or n_uhr above 0")
        if not self.split or not self.split.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"split={self.split!r}: a word such as train, val or test")
        if not 2048 <= self.uhr_size_px <= 32768:
            raise ValueError(f"uhr_size_px must be in 2048..32768, got {self.uhr_size_px}")
        if not 16 <= self.size_px <= 4096:
            raise ValueError(f"size_px must be in 16..4096, got {self.size_px}")
        if self.chip_style not in ("textured", "plain"):
            raise ValueError(f"chip_style must be 'textured' or 'plain', got {self.chip_style!r}")
        if not 16 <= self.chip_size_px <= 1024:
            raise ValueError(f"chip_size_px must be in 16..1024, got {self.chip_size_px}")
        lo, hi = self.gsd_range_m
        if not (0.05 <= lo <= hi <= 30.0):
            raise ValueError(
                "gsd_range_m must satisfy 0.05 <= lo <= hi <= 30 (the world's range), "
                f"got {lo}, {hi}"
            )
        bad = [v for v in self.views if v not in VIEWS]
        if bad or not self.views:
            raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {self.views}")
        if not 0.0 <= self.cloud_prob <= 1.0:
            raise ValueError(f"cloud_prob must be in [0, 1], got {self.cloud_prob}")
        unknown = [k for k in self.kinds if k not in SCENE_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {SCENE_KINDS}, got {unknown}")


@dataclass
class Manifest:
    """What was written, for people and for provenance."""

    config: dict[str, Any]
    version: str = __version__
    images: int = 0
    records: int = 0
    per_tier: Counter[str] = field(default_factory=Counter)
    per_task: Counter[str] = field(default_factory=Counter)
    per_kind: Counter[str] = field(default_factory=Counter)
    per_class: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("per_tier", "per_task", "per_kind", "per_class"):
            d[k] = dict(sorted(getattr(self, k).items()))
        return d


def _gsd_of(gsd_m: float, what: str) -> GSD:
    return GSD.exact(gsd_m, GSDSource.METADATA, f"synthetic world: {what}")


def _record(
    rid: str, qa: QA, image: ImageRef, mask_path: str | None, meta: dict[str, Any]
) -> Record:
    boxes = [
        Box(label=lb.cls, quad_px=tuple(float(v) for v in lb.quad_px.reshape(-1)))
        for lb in qa.boxes
    ]
    masks = (
        [Mask(label=lb.cls, path=mask_path, instance=lb.index + 1) for lb in qa.boxes]
        if mask_path and qa.boxes
        else []
    )
    return Record(
        id=rid,
        task=qa.task,
        source="synth",
        images=[image],
        messages=[
            Message(role="user", content=[ImagePart(index=0), TextPart(text=qa.question)]),
            Message(role="assistant", content=qa.answer),
        ],
        boxes=boxes,
        masks=masks,
        meta={"question_kind": qa.kind, **qa.meta, **meta},
    )


def write_scene(out: Path, index: int, cfg: SynthConfig, manifest: Manifest) -> list[Record]:
    """Render scene ``index`` of the dataset, write its files, return its records."""
    rng = np.random.default_rng([cfg.seed, 1, index])
    kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
    lo, hi = cfg.gsd_range_m
    gsd = float(10 ** rng.uniform(math.log10(lo), math.log10(hi)))
    n = cfg.size_px
    scene = generate_scene(kind, n * gsd, n * gsd, gsd, int(rng.integers(1 << 31)))
    canvas = scene.render(Canvas(n, n, gsd))
    cover = float(rng.uniform(0.2, 0.6)) if rng.random() < cfg.cloud_prob else 0.0
    clouds = cloud_alpha(canvas, cover, int(rng.integers(1 << 31))) if cover else None
    sid = f"scene-{index:06d}"
    transform = utm_transform(gsd, n, n, float(rng.uniform(4.0e6, 6.0e6)))
    tags = {
        "EARTHVLM_GSD_M": repr(gsd),
        "EARTHVLM_VERSION": __version__,
        "EARTHVLM_SEED": str(cfg.seed),
    }
    paths: dict[str, str] = {}
    view_rng = np.random.default_rng([cfg.seed, 2, index])
    for view in cfg.views:
        rel = f"images/{sid}_{view}.tif"
        if view == "optical":
            arr, names = optical_view(canvas, view_rng, clouds), ("red", "green", "blue")
        elif view == "sar":
            arr, names = sar_view(canvas, view_rng), ("VV",)
        else:
            arr, names = multispectral_view(canvas, view_rng, clouds), BANDS
        write_geotiff(out / rel, arr, crs=UTM_CRS, transform=transform, tags=tags, band_names=names)
        paths[view] = rel
        manifest.images += 1
    labels = label_scene(scene, canvas)
    mask_rel = None
    if labels:
        mask_rel = f"masks/{sid}.png"
        _write_png16(out / mask_rel, instance_mask(scene, canvas))
    main = "optical" if "optical" in paths else next(iter(paths))
    modality = {"optical": "optical", "sar": "sar", "ms": "multispectral"}[main]
    bands = {"optical": ["red", "green", "blue"], "sar": ["VV"], "ms": list(BANDS)}[main]
    image = ImageRef(path=paths[main], modality=modality, bands=bands, width=n, height=n,
                     gsd=_gsd_of(gsd, f"{kind} scene"))  # fmt: skip
    facts = questions.scene_facts(scene, canvas, labels, modality=modality, clouds=clouds)
    tier = DEFAULT_TIERS.tier_of_m(gsd)
    meta = {
        "scene_kind": kind, "tier": tier.value, "has_scale_cues": scene.has_scale_cues,
        "cloud_cover": round(cover, 3), "views": paths,
        "sar_scaling": f"dB = value / 255 * {SAR_DB_SPAN:g} + {SAR_DB_MIN:g}",
    }  # fmt: skip
    qrng = np.random.default_rng([cfg.seed, 3, index])
    return _ask(sid, facts, qrng, image, mask_rel, meta, manifest, kind)


def write_chip(out: Path, index: int, cfg: SynthConfig, manifest: Manifest) -> Record:
    """Render chip ``index`` (classes balanced in turn), write it, return its record."""
    rng = np.random.default_rng([cfg.seed, 4, index])
    names = sorted(CHIP_CLASSES)
    cls = names[index % len(names)]
    chip = render_chip(cls, rng, size=cfg.chip_size_px, style=cfg.chip_style)
    n = cfg.chip_size_px
    cid = f"chip-{index:06d}"
    rel = f"images/{cid}.tif"
    transform = utm_transform(chip.gsd_m, n, n, float(rng.uniform(4.0e6, 6.0e6)))
    write_geotiff(
        out / rel, chip.image, crs=UTM_CRS, transform=transform,
        tags={"EARTHVLM_GSD_M": repr(chip.gsd_m)}, band_names=("red", "green", "blue"),
    )  # fmt: skip
    manifest.images += 1
    tier = DEFAULT_TIERS.tier_of_m(chip.gsd_m)
    manifest.per_tier[tier.value] += 1
    manifest.per_class[cls] += 1
    manifest.per_task["classification"] += 1
    pair = CHIP_CLASSES[cls].pair
    return Record(
        id=cid,
        task="classification",
        source="synth-chips",
        images=[
            ImageRef(
                path=rel,
                width=n,
                height=n,
                bands=["red", "green", "blue"],
                gsd=_gsd_of(chip.gsd_m, "object chip"),
            )
        ],
        messages=[
            Message(
                role="user",
                content=[
                    ImagePart(index=0),
                    TextPart(text="What is the object in the centre of this image?"),
                ],
            ),
            Message(role="assistant", content=cls),
        ],
        boxes=[Box(label=cls, xyxy_px=chip.xyxy_px)],
        meta={
            "mode": "chip",
            "tier": tier.value,
            "length_m": round(chip.length_m, 4),
            "length_px": round(chip.length_px, 3),
            "ambiguous_pair": sorted([cls, pair]) if pair else None,
        },
    )


def write_uhr(out: Path, index: int, cfg: SynthConfig, manifest: Manifest) -> list[Record]:
    """Render UHR scene ``index`` tile by tile, write it, return its records.

    Questions come from :data:`~earthvlm.synth.questions.GENERATORS` (ROI questions
    included); boxes are in full-raster pixels. No instance mask is written (a full-size
    mask would defeat windowed reads).
    """
    rng = np.random.default_rng([cfg.seed, 5, index])
    kinds = [k for k in UHR_KINDS if k in cfg.kinds] or list(UHR_KINDS)
    kind = kinds[int(rng.integers(len(kinds)))]
    lo, hi = cfg.gsd_range_m
    g_lo = min(max(lo, UHR_GSD_RANGE_M[0]), hi)
    g_hi = max(min(hi, UHR_GSD_RANGE_M[1]), g_lo)
    gsd = float(10 ** rng.uniform(math.log10(g_lo), math.log10(g_hi)))
    uid = f"uhr-{index:04d}"
    rel = f"images/{uid}.tif"
    uhr = write_uhr_scene(
        out / rel, size_px=cfg.uhr_size_px, gsd_m=gsd, kind=kind,
        seed=int(rng.integers(1 << 31)), northing_m=float(rng.uniform(4.0e6, 6.0e6)),
    )  # fmt: skip
    gsd, n, labels = uhr.gsd_m, uhr.size_px, uhr.labels
    manifest.images += 1
    image = ImageRef(path=rel, modality="optical", bands=["red", "green", "blue"], width=n,
                     height=n, gsd=_gsd_of(gsd, f"UHR {kind} scene"))  # fmt: skip
    # objects of known size are scale cues even on a scale-free background
    cues = uhr.scene.has_scale_cues or bool(labels)
    # road features etc. come off the layout, no pixels needed
    facts = replace(questions.scene_facts(uhr.scene, uhr.grid, labels), has_scale_cues=cues)
    tier = DEFAULT_TIERS.tier_of_m(gsd)
    meta = {
        "mode": "uhr", "scene_kind": kind, "tier": tier.value, "has_scale_cues": cues,
        "cloud_cover": 0.0, "views": {"optical": rel},
        "uhr": {"size_px": n, "block_px": 512, "overviews": list(uhr.overviews),
                "n_objects": len(labels)},
    }  # fmt: skip
    qrng = np.random.default_rng([cfg.seed, 6, index])
    return _ask(uid, facts, qrng, image, None, meta, manifest, f"uhr-{kind}")


def _ask(
    sid: str,
    facts: questions.SceneFacts,
    rng: np.random.Generator,
    image: ImageRef,
    mask_rel: str | None,
    meta: dict[str, Any],
    manifest: Manifest,
    kind_label: str,
) -> list[Record]:
    """Run every question generator on one image's facts; count what was written."""
    records = []
    for name, gen in GENERATORS.items():
        for k, qa in enumerate(gen(facts, rng)):
            records.append(_record(f"{sid}-{name}-{k}", qa, image, mask_rel, meta))
            manifest.per_task[qa.task] += 1
    manifest.per_tier[DEFAULT_TIERS.tier_of_m(facts.gsd_m).value] += 1
    manifest.per_kind[kind_label] += 1
    manifest.per_class.update(lb.cls for lb in facts.labels if lb.detectable)
    return records


def _write_png16(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(mask.astype(np.uint16)).save(tmp, format="PNG")
    tmp.replace(path)


def generate_dataset(
    out_dir: str | Path, cfg: SynthConfig, progress: Callable[[int], None] | None = None
) -> Manifest:
    """Write ``cfg``'s dataset under ``out_dir``: ``images/``, ``masks/``,
    ``records.jsonl`` and ``manifest.json`` (written last: its presence marks a complete
    dataset). Scenes come first, then chips, then UHR scenes (``images/uhr-XXXX.tif``,
    counted in the manifest's ``per_kind`` as ``uhr-<kind>``).

    Args:
        out_dir: Output folder (created).
        cfg: What to generate.
        progress: Called with 1 after each scene, chip or UHR scene (for progress bars).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten
    manifest = Manifest(config={**asdict(cfg), "kinds": list(cfg.kinds), "views": list(cfg.views)})
    records: list[Record] = []
    for i in range(cfg.n_scenes):
        records.extend(write_scene(out, i, cfg, manifest))
        if progress:
            progress(1)
    for i in range(cfg.n_chips):
        records.append(write_chip(out, i, cfg, manifest))
        if progress:
            progress(1)
    for i in range(cfg.n_uhr):
        records.extend(write_uhr(out, i, cfg, manifest))
        if progress:
            progress(1)
    if cfg.split != "train":  # records are built as training records
        records = [r.model_copy(update={"split": cfg.split}) for r in records]
    manifest.records = len(records)
    write_records_and_manifest(out, records, manifest.to_dict())
    return manifest


def write_records_and_manifest(out: Path, records: list[Record], manifest: dict[str, Any]) -> int:
    """Write ``out/records.jsonl`` and then ``out/manifest.json`` (``manifest`` plus the
    records' SHA-256; written last, it marks a complete dataset); the records written."""
    n = write_records(records, out / "records.jsonl")
    digest = hashlib.sha256((out / "records.jsonl").read_bytes()).hexdigest()
    atomic_write_text(
        out / "manifest.json",
        json.dumps({**manifest, "records_sha256": digest}, indent=2, sort_keys=True) + "\n",
    )
    return n


__all__ = [
    "Manifest",
    "ObjectLabel",
    "SynthConfig",
    "generate_dataset",
    "utm_transform",
    "write_records_and_manifest",
]
