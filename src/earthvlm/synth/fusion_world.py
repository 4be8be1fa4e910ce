"""The fusion experiment's data: co-registered optical + SAR scenes, clouds, masks, and
EarthMind-Bench-style questions asked under three settings.

Each scene of the synthetic world (:mod:`earthvlm.synth`) is rendered once and written
as two GeoTIFF views of the same footprint and GSD: optical (partly under cloud with
probability ``cloud_prob``) and single-polarisation SAR (clouds are transparent to it).
Two layouts:

* ``scene``: a generated scene (urban, harbour, airport, ...) with all its objects, at a
  GSD drawn from ``gsd_range_m``: the realistic case, and too hard for a tiny model
  trained from scratch in CPU minutes (a random ViT does not learn where small objects
  are in a few thousand steps; see the micro-ScaleEarth notes).
* ``chip``: one catalogue object (its real parts and materials) within a few pixels of
  the centre of a homogeneous scene (grassland, desert, forest, water), its length drawn
  in pixels from ``chip_length_px`` (the GSD follows), as in the scale experiment's
  object chips: a tiny model learns centred shapes in CPU minutes, so the question the
  experiment asks (does SAR help where clouds hide the object?) can be answered.
Two kinds of question are asked about each scene:

* **MCQ** (EarthMind-Bench's object existence): "Is there a <class> in the scene?
  Options: yes, no."; scored by strict match. Each scene asks up to ``mcq_per_scene``
  present classes (those clouds hide first, so that the case fusion is for is asked
  often) and as many absent ones, drawn so that every class is about as often absent as
  present (:func:`class_weights`): class frequency alone then tells little, and a model
  that does not look scores near 50%.
* **Open-ended** (EarthMind-Bench's open questions, scored by the LLM judge): "Which
  kinds of object are in the scene?" answered with the present classes in name order
  ("building, ship and small vehicle.").
* **Referring segmentation**: "Segment the <class>." answered ``[SEG]`` with the union
  mask of that class's objects (a binary PNG); an absent class is answered "There is no
  <class>." without ``[SEG]`` (EarthMind App. D: no ``[SEG]`` means not present).

Every question is written three times, once per setting: ``fused`` (optical then SAR in
one sample: the pair a fusion model fuses), ``optical`` and ``sar`` alone. An item is
*cloud-hidden* when clouds cover (opacity > 0.5) most of the pixels of the objects it is
about; such an item can be answered from SAR but hardly from optical. Unlike the
synthetic world's own question generators (which never ask about what clouds hide),
these questions ask about hidden objects on purpose: that is the case fusion is for.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earthvlm.data.record import ImagePart, ImageRef, Mask, Message, Record, TextPart
from earthvlm.geo.raster import write_geotiff
from earthvlm.scale.gsd import GSD, GSDSource
from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.dataset import write_records_and_manifest
from earthvlm.synth.georef import UTM_CRS, utm_transform
from earthvlm.synth.labels import instance_mask, label_scene
from earthvlm.synth.render import (
    SAR_DB_MIN,
    SAR_DB_SPAN,
    Canvas,
    cloud_alpha,
    optical_view,
    sar_view,
)
from earthvlm.synth.scene import CUE_KINDS, HOMOGENEOUS_KINDS, Scene, Strip, generate_scene

#: The three evaluation settings of EarthMind-Bench, and the images each shows.
SETTINGS: dict[str, tuple[str, ...]] = {
    "fused": ("optical", "sar"),
    "optical": ("optical",),
    "sar": ("sar",),
}
#: Scene layouts (see the module docstring).
LAYOUTS = ("scene", "chip")
#: Chip classes by default: distinct silhouettes (rectangle, disc, cross, hull) whose
#: metal or concrete bodies return strongly in SAR.
CHIP_CLASSES = ("building", "plane", "ship", "storage tank")
#: Grounds of ``flat`` chips (the object's class does not decide it).
FLAT_GROUNDS = ("grass", "soil", "sand", "water")
#: Cloud opacity above which a pixel counts as hidden.
HIDDEN_ALPHA = 0.5
MCQ_QUESTION = "Is there a {cls} in the scene? Options: yes, no."
MCQ_OPTIONS = ["yes", "no"]
SEG_QUESTION = "Segment the {cls}."
NO_OBJECT = "There is no {cls}."
SEG_ANSWER = "[SEG]"
OPEN_QUESTION = "Which kinds of object are in the scene?"


@dataclass(frozen=True)
class WorldConfig:
    """What to generate.

    Attributes:
        n_scenes: Scenes (each gives MCQs, an open question and one or two segmentation
            questions).
        size_px: Side of each view in pixels.
        cloud_prob: Chance that a scene's optical view is partly under cloud.
        cloud_cover: ``(low, high)`` share of a cloudy view under cloud.
        gsd_range_m: Scene GSDs, drawn log-uniformly (objects must show at this size).
        negative_share: Share of scenes that also ask to segment an absent class.
        mcq_per_scene: Present classes asked per scene (as many absent ones too).
        open_ended: Ask the open-ended question of every scene.
        layout: ``scene`` or ``chip`` (see the module docstring).
        chip_classes: Classes a chip may show (``chip`` layout; absent classes are
            drawn from these too).
        chip_length_px: ``(low, high)`` object length in pixels (``chip`` layout).
        chip_background: ``flat`` (one ground material, :data:`FLAT_GROUNDS`) or
            ``textured`` (a homogeneous scene: grassland, desert, forest or water under
            fractal texture, which a tiny model trained from scratch reads far slower).
        seed: Seed of everything (same seed, same bytes).
    """

    n_scenes: int = 32
    size_px: int = 64
    cloud_prob: float = 0.5
    cloud_cover: tuple[float, float] = (0.4, 0.8)
    gsd_range_m: tuple[float, float] = (0.4, 1.5)
    negative_share: float = 0.5
    mcq_per_scene: int = 2
    open_ended: bool = True
    layout: str = "chip"
    chip_classes: tuple[str, ...] = CHIP_CLASSES
    chip_length_px: tuple[float, float] = (16.0, 28.0)
    chip_background: str = "flat"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_scenes < 1:
            raise ValueError(f"n_scenes={self.n_scenes}: must be >= 1")
        if not 32 <= self.size_px <= 1024:
            raise ValueError(f"size_px={self.size_px}: must be in 32..1024")
        if not 0.0 <= self.cloud_prob <= 1.0:
            raise ValueError(f"cloud_prob={self.cloud_prob}: must be in [0, 1]")
        lo, hi = self.cloud_cover
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"cloud_cover={self.cloud_cover}: need 0 < low <= high <= 1")
        glo, ghi = self.gsd_range_m
        if not 0.05 <= glo <= ghi <= 30.0:
            raise ValueError(f"gsd_range_m={self.gsd_range_m}: need 0.05 <= low <= high <= 30")
        if not 0.0 <= self.negative_share <= 1.0:
            raise ValueError(f"negative_share={self.negative_share}: must be in [0, 1]")
        if self.mcq_per_scene < 1:
            raise ValueError(f"mcq_per_scene={self.mcq_per_scene}: must be >= 1")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout={self.layout!r}: choose from {LAYOUTS}")
        if self.chip_background not in ("flat", "textured"):
            raise ValueError(
                f"chip_background={self.chip_background!r}: choose 'flat' or 'textured'"
            )
        unknown = sorted(set(self.chip_classes) - set(CLASSES))
        if unknown or len(set(self.chip_classes)) < 2:
            raise ValueError(
                f"chip_classes={self.chip_classes}: need 2 or more of {sorted(CLASSES)}"
            )
        plo, phi = self.chip_length_px
        if not 4.0 <= plo <= phi <= self.size_px * 0.75:
            raise ValueError(
                f"chip_length_px={self.chip_length_px}: need 4 <= low <= high <= 3/4 of "
                f"size_px ({self.size_px})"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes questions may name."""
        return tuple(sorted(self.chip_classes)) if self.layout == "chip" else tuple(CLASSES)


@dataclass
class WorldSummary:
    """What was written (``manifest.json``)."""

    config: dict[str, Any]
    scenes: int = 0
    records: int = 0
    items: Counter[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items": dict(sorted((self.items or Counter()).items()))}


#: Draws per scene before giving up on finding one with a visible object.
MAX_DRAWS = 32


def _chip_scene(cfg: WorldConfig, rng: np.random.Generator) -> Scene:
    """One catalogue object near the centre of a homogeneous scene (``chip`` layout)."""
    cls = cfg.chip_classes[int(rng.integers(len(cfg.chip_classes)))]
    c = CLASSES[cls]
    length_m = float(rng.uniform(*c.length_m))
    gsd = length_m / float(rng.uniform(*cfg.chip_length_px))
    n = cfg.size_px
    x, y = (n / 2 + rng.uniform(-4.0, 4.0, 2)) * gsd  # within 4 px of the centre
    obj = PlacedObject(cls, float(x), float(y), length_m, length_m * c.aspect,
                       float(rng.uniform(0, 360)), str(rng.choice(c.body)))  # fmt: skip
    seed = int(rng.integers(1 << 31))
    if cfg.chip_background == "textured":
        kind = HOMOGENEOUS_KINDS[int(rng.integers(len(HOMOGENEOUS_KINDS)))]
        return Scene(kind, n * gsd, n * gsd, gsd, seed, objects=[obj],
                     possible_classes=tuple(cfg.chip_classes))  # fmt: skip
    # flat: one material under the whole chip (painted as an area over the background)
    ground = FLAT_GROUNDS[int(rng.integers(len(FLAT_GROUNDS)))]
    area = Strip(n * gsd / 2, n * gsd / 2, n * gsd * 1.5, n * gsd * 1.5, 0.0, ground)
    return Scene("farmland", n * gsd, n * gsd, gsd, seed, areas=[area], objects=[obj],
                 possible_classes=tuple(cfg.chip_classes))  # fmt: skip


def _views(index: int, cfg: WorldConfig, draw: int = 0) -> dict[str, Any] | None:
    """Render draw ``draw`` of scene ``index``: views, labels, instance map, clouds
    (None: no visible object)."""
    rng = np.random.default_rng([cfg.seed, 11, index, draw])
    n = cfg.size_px
    if cfg.layout == "chip":
        scene = _chip_scene(cfg, rng)
        kind, gsd = scene.kind, scene.gsd_m
    else:
        kind = CUE_KINDS[int(rng.integers(len(CUE_KINDS)))]
        lo, hi = cfg.gsd_range_m
        gsd = float(10 ** rng.uniform(math.log10(lo), math.log10(hi)))
        scene = generate_scene(kind, n * gsd, n * gsd, gsd, int(rng.integers(1 << 31)))
    canvas = scene.render(Canvas(n, n, gsd))
    cloudy = rng.random() < cfg.cloud_prob
    cover = float(rng.uniform(*cfg.cloud_cover)) if cloudy else 0.0
    clouds = cloud_alpha(canvas, cover, int(rng.integers(1 << 31)))
    view_rng = np.random.default_rng([cfg.seed, 12, index, draw])
    ids = instance_mask(scene, canvas)
    labels = [
        lb for lb in label_scene(scene, canvas) if lb.detectable and (ids == lb.index + 1).any()
    ]
    if not labels:
        return None
    return {
        "kind": kind, "gsd": gsd, "cover": cover, "clouds": clouds, "labels": labels,
        "ids": ids, "optical": optical_view(canvas, view_rng, clouds if cloudy else None),
        "sar": sar_view(canvas, view_rng), "rng": rng,
        "northing": float(rng.uniform(4.0e6, 6.0e6)),
    }  # fmt: skip


def _hidden_share(mask: np.ndarray, clouds: np.ndarray) -> float:
    """Share of the mask's pixels under cloud."""
    area = int(mask.sum())
    return float((clouds[mask] > HIDDEN_ALPHA).sum() / area) if area else 0.0


def _records(
    sid: str,
    qid: str,
    question: str,
    answer: str,
    paths: dict[str, str],
    gsd: GSD,
    size: int,
    mask_rel: str | None,
    meta: dict[str, Any],
) -> list[Record]:
    """One question as three records, one per setting."""
    out = []
    for setting, views in SETTINGS.items():
        images = [
            ImageRef(
                path=paths[v],
                modality=v,
                width=size,
                height=size,
                gsd=gsd,
                bands=["red", "green", "blue"] if v == "optical" else ["VV"],
            )
            for v in views
        ]
        masks = [Mask(label=meta.get("class"), image=0, path=mask_rel)] if mask_rel else []
        content = [ImagePart(index=k) for k in range(len(images))]
        out.append(
            Record(
                id=f"{sid}-{qid}-{setting}",
                task=meta["task"],
                source="synth-fusion",
                images=images,
                messages=[
                    Message(role="user", content=[*content, TextPart(text=question)]),
                    Message(role="assistant", content=answer),
                ],
                masks=masks,
                meta={
                    **meta,
                    "setting": setting,
                    "item": f"{sid}-{qid}",
                    "sar_scaling": f"dB = value / 255 * {SAR_DB_SPAN:g} + {SAR_DB_MIN:g}",
                },
            )
        )
    return out


def _scene(index: int, cfg: WorldConfig) -> dict[str, Any] | None:
    """Scene ``index``, redrawn until it shows an object (at most :data:`MAX_DRAWS` times)."""
    return next((v for d in range(MAX_DRAWS) if (v := _views(index, cfg, d)) is not None), None)


def class_weights(cfg: WorldConfig) -> dict[str, float]:
    """Weights for drawing absent classes so that each class is asked about about as
    often when absent as when present.

    A scene asks ``k = min(mcq_per_scene, n_present)`` of its ``n_present`` classes as
    present, so class ``c`` is asked as present about ``q(c) = E[1{c present} k /
    n_present]`` times per scene; drawing ``k`` absent classes with weight ``q(c) / P(c
    absent)`` asks it as absent about as often. The expectations are taken over the
    ``cfg``'s own scenes (a first, rendering-only pass).
    """
    q: Counter[str] = Counter()
    absent: Counter[str] = Counter()
    n = 0
    for i in range(cfg.n_scenes):
        v = _scene(i, cfg)
        if v is None:
            continue
        n += 1
        present = {lb.cls for lb in v["labels"]}
        for c in present:
            q[c] += min(cfg.mcq_per_scene, len(present)) / len(present)
        absent.update(set(cfg.classes) - present)
    return {c: (q[c] / n) / (absent[c] / n) if absent[c] else 0.0 for c in cfg.classes}


def _draw_absent(
    absent: list[str], weights: dict[str, float], rng: np.random.Generator, k: int = 1
) -> list[str]:
    """``k`` distinct absent classes (fewer if fewer are absent), drawn by ``weights``."""
    w = np.array([weights.get(c, 0.0) for c in absent], dtype=np.float64)
    # a floor keeps every class drawable (a draw without replacement needs k of them)
    w = w + 1e-6 * w.max() if w.max() > 0 else np.ones(len(absent))
    picks = rng.choice(len(absent), size=min(k, len(absent)), replace=False, p=w / w.sum())
    return [absent[int(i)] for i in picks]


def _class_mask(v: dict[str, Any], cls: str) -> np.ndarray:
    return np.isin(v["ids"], [lb.index + 1 for lb in v["labels"] if lb.cls == cls])


def _ask_present(hidden: dict[str, float], k: int, rng: np.random.Generator) -> list[str]:
    """``k`` present classes to ask about: those clouds hide first, each group shuffled."""
    under = sorted(c for c, h in hidden.items() if h > 0.5)
    seen = sorted(c for c, h in hidden.items() if h <= 0.5)
    order = [under[int(i)] for i in rng.permutation(len(under))]
    order += [seen[int(i)] for i in rng.permutation(len(seen))]
    return order[:k]


def _class_list(classes: list[str]) -> str:
    """``["building", "ship", "tree"]`` -> ``"building, ship and tree."``"""
    head = ", ".join(classes[:-1])
    return f"{head} and {classes[-1]}." if head else f"{classes[-1]}."


def write_scene(
    out: Path, index: int, cfg: WorldConfig, weights: dict[str, float] | None = None
) -> list[Record]:
    """Render scene ``index`` (redrawn until it shows an object), write its views and
    masks, return its records; absent classes are drawn with ``weights``
    (:func:`class_weights`; default uniform)."""
    v = _scene(index, cfg)
    if v is None:
        return []
    weights = weights or {}
    sid = f"fscene-{index:05d}"
    n, rng = cfg.size_px, v["rng"]
    transform = utm_transform(v["gsd"], n, n, v["northing"])
    tags = {"EARTHVLM_GSD_M": repr(v["gsd"]), "EARTHVLM_SEED": str(cfg.seed)}
    paths = {}
    for view, names in (("optical", ("red", "green", "blue")), ("sar", ("VV",))):
        rel = f"images/{sid}_{view}.tif"
        write_geotiff(out / rel, v[view], crs=UTM_CRS, transform=transform, tags=tags,
                      band_names=names)  # fmt: skip
        paths[view] = rel
    gsd = GSD.exact(v["gsd"], GSDSource.METADATA, "synthetic fusion world")
    present = sorted({lb.cls for lb in v["labels"]})
    absent = sorted(set(cfg.classes) - set(present))
    base = {"scene_kind": v["kind"], "cloud_cover": round(v["cover"], 3),
            "cloudy": v["cover"] > 0}  # fmt: skip
    records: list[Record] = []
    # MCQ (object existence): present classes (cloud-hidden first) and as many absent
    hidden = {c: _hidden_share(_class_mask(v, c), v["clouds"]) for c in present}
    asked = _ask_present(hidden, cfg.mcq_per_scene, rng)
    asked += _draw_absent(absent, weights, rng, len(asked)) if absent else []
    for j, cls in enumerate(asked):
        share = hidden.get(cls, 0.0)
        answer = "yes" if cls in hidden else "no"
        records += _records(
            sid, f"mcq{j}", MCQ_QUESTION.format(cls=cls), answer, paths, gsd, n, None,
            {**base, "task": "mcq", "class": cls, "candidates": MCQ_OPTIONS,
             "present": answer == "yes", "hidden_share": round(share, 3),
             "cloud_hidden": share > 0.5},
        )  # fmt: skip
    if cfg.open_ended:
        under = sorted(c for c, h in hidden.items() if h > 0.5)
        records += _records(
            sid, "open", OPEN_QUESTION, _class_list(present), paths, gsd, n, None,
            {**base, "task": "open", "classes": present, "hidden_classes": under,
             "cloud_hidden": bool(under)},
        )  # fmt: skip
    # referring segmentation of a present class (another draw), as a binary mask
    cls = present[int(rng.integers(len(present)))]
    cls_mask = _class_mask(v, cls)
    mask_rel = f"masks/{sid}_{cls.replace(' ', '_')}.png"
    _write_png(out / mask_rel, cls_mask)
    records += _records(
        sid, "seg", SEG_QUESTION.format(cls=cls), SEG_ANSWER, paths, gsd, n, mask_rel,
        {**base, "task": "segmentation", "class": cls, "present": True,
         "hidden_share": round(hidden[cls], 3), "cloud_hidden": hidden[cls] > 0.5},
    )  # fmt: skip
    if absent and rng.random() < cfg.negative_share:
        cls = _draw_absent(absent, weights, rng)[0]
        records += _records(
            sid, "seg-absent", SEG_QUESTION.format(cls=cls), NO_OBJECT.format(cls=cls), paths,
            gsd, n, None,
            {**base, "task": "segmentation", "class": cls, "present": False,
             "hidden_share": 0.0, "cloud_hidden": False},
        )  # fmt: skip
    return records


def _write_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
    tmp.replace(path)


def write_world(out_dir: str | Path, cfg: WorldConfig) -> WorldSummary:
    """Write ``cfg``'s scenes under ``out_dir``: ``images/``, ``masks/``,
    ``records.jsonl`` and ``manifest.json`` (written last: it marks a complete dataset).
    Scenes without a visible object are skipped (counted in the manifest)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    summary = WorldSummary(config=asdict(cfg), items=Counter())
    records: list[Record] = []
    weights = class_weights(cfg)
    for i in range(cfg.n_scenes):
        recs = write_scene(out, i, cfg, weights)
        summary.items["scenes_without_objects" if not recs else "scenes"] += 1
        for r in recs:
            if r.meta["setting"] == "fused":
                key = f"{r.task}_{'cloud_hidden' if r.meta['cloud_hidden'] else 'visible'}"
                summary.items[key] += 1
        records += recs
    summary.scenes = summary.items["scenes"]
    summary.records = len(records)
    write_records_and_manifest(out, records, summary.to_dict())
    return summary


__all__ = [
    "CHIP_CLASSES",
    "LAYOUTS",
    "MCQ_OPTIONS",
    "OPEN_QUESTION",
    "SETTINGS",
    "WorldConfig",
    "WorldSummary",
    "class_weights",
    "write_scene",
    "write_world",
]
