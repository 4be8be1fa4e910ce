"""Whole-scene detection: detection as text over a raster of any size, put on the map.

::

    scene -> overlapping tiles (tile_px, overlap_px; the DOTA split rule)
          -> each tile read by window (UHRReader.read: native when the model's pixel
             budget allows, else downsampled, the view's GSD saying so)
          -> the detector writes text (detection as text, RSCoVLM sec. III-E)
          -> parse_detections (never raises; every candidate kept, repaired or dropped)
          -> boxes to source pixels (earthvlm.geo.mapping.view_to_source_px)
          -> merged across tiles: rotated NMS per class at IoU 0.1
             (earthvlm.geo.dota_split.merge_detections, the whole-scene DOTA merge)
          -> features in source pixels, written on the map (earthvlm.geo.vector)

Memory holds one tile's pixels and the detections, whatever the scene's size: the tiles
are read one by one, never the raster. Every tile is accounted for in a :class:`Ledger`
(``ok``, or ``failed`` with a reason: an unreadable tile, a detector error), every
parsed candidate in the parse counts, and every detection the merge removes in
:attr:`SceneDetections.merged_away`.

Frames. The detection-as-text convention writes integer pixels of the record's image
(:mod:`earthvlm.data.detection_text`); a tile's image is its source window, so the
default ``box_frame="window_px"`` reads boxes in pixels of the window at source
resolution, whatever size the model was shown it at. A model that writes in its own
grounding frame (Qwen3-VL 0-1000, Qwen2.5-VL pixels of the resized view) takes
``box_frame=backbone.box_frame``.

Where this departs from the references: a text detector gives no confidence, so the merge
ranks duplicates by their distance to the tile's inner edges (the copy a tile saw whole
wins; :func:`~earthvlm.geo.dota_split.merge_detections`) and features carry
``score: null``. Tiles are generated one at a time (no batching across tiles).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio
import shapely

from earthvlm.data.detection_parse import parse_detections
from earthvlm.data.detection_text import DetectionFormat, serialise_detections
from earthvlm.data.ledger import Ledger
from earthvlm.data.resolution import Resolution
from earthvlm.data.sources._prompts import detection_prompt
from earthvlm.errors import EarthVLMError, RasterError
from earthvlm.geo.boxes import px_to_frame
from earthvlm.geo.dota_split import merge_detections, sliding_windows, split_objects
from earthvlm.geo.iou import as_quads
from earthvlm.geo.mapping import VIEW_FRAMES, Georef, view_to_source_px
from earthvlm.geo.vector import Feature, VectorReport, write_features
from earthvlm.io import atomic_write_text
from earthvlm.scale.gsd import GSD
from earthvlm.uhr.reader import ReaderConfig, UHRReader
from earthvlm.uhr.view import View

if TYPE_CHECKING:
    from earthvlm.models.earthvlm import EarthVLM

#: ``(view, prompt) -> text``: one tile's detection as text.
DetectFn = Callable[[View, str], str]

UNREADABLE_TILE = "unreadable_tile"
DETECTOR_ERROR = "detector_error"


@dataclass(frozen=True)
class SceneDetectConfig:
    """How :func:`detect_scene` tiles, asks and merges."""

    tile_px: int = 1024
    """Tile side in source pixels (a scene side shorter than this gets one tile)."""
    overlap_px: int = 200
    """Overlap of neighbouring tiles in source pixels: at least the longest object, so
    each object lies whole in some tile."""
    classes: tuple[str, ...] | None = None
    """Class names the prompt lists and labels are mapped onto (others are dropped as
    ``unknown_class``); ``None`` keeps every label as written."""
    fmt: DetectionFormat = "quad"
    """``quad`` (oriented boxes) or ``hbox`` (horizontal), asked for and parsed."""
    box_frame: str = "window_px"
    """The frame boxes are written in: ``window_px`` (detection as text: pixels of the
    tile at source resolution), ``norm1000`` or ``abs_px_resized`` (a backbone's own)."""
    prompt: str | None = None
    """The instruction; default the project's detection prompt for ``fmt``, listing
    ``classes``."""
    max_new_tokens: int = 512
    """Tokens per tile (a model stops earlier at its end of sequence)."""
    nms_iou: float = 0.1
    """IoU above which a detection of the same class in another tile is a duplicate
    (DOTA_devkit's merge)."""
    block_cache_mib: int = 64
    """GDAL's block cache while the scene is read. GDAL's default (5 % of the RAM) keeps
    every block decoded, so memory would grow with the scene (300 MiB at 8192 px against
    125 MiB at 2048); 64 MiB holds the blocks neighbouring tiles share and stays flat."""

    def __post_init__(self) -> None:
        if self.tile_px < 32:
            raise ValueError(f"tile_px={self.tile_px}: give at least 32")
        if not 0 <= self.overlap_px < self.tile_px:
            raise ValueError(
                f"overlap_px={self.overlap_px}: give 0 <= overlap_px < tile_px ({self.tile_px})"
            )
        if self.fmt not in ("quad", "hbox"):
            raise ValueError(f"fmt={self.fmt!r}: choose 'quad' or 'hbox'")
        if self.box_frame not in VIEW_FRAMES:
            raise ValueError(f"box_frame={self.box_frame!r}: choose one of {list(VIEW_FRAMES)}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: give >= 1")
        if self.block_cache_mib < 1:
            raise ValueError(f"block_cache_mib={self.block_cache_mib}: give >= 1")
        if not 0 <= self.nms_iou < 1:
            raise ValueError(f"nms_iou={self.nms_iou}: give 0 <= nms_iou < 1")
        if self.classes is not None and not all(c and c == c.strip() for c in self.classes):
            raise ValueError(f"classes={self.classes!r}: give non-empty names without padding")

    @property
    def instruction(self) -> str:
        """The prompt asked on every tile."""
        return self.prompt or detection_prompt(self.fmt, "plain", self.classes)


@dataclass(frozen=True)
class TileOutcome:
    """What became of one tile.

    Attributes:
        index: Tile index (row by row).
        window_xyxy_px: The tile's source window.
        status: ``ok`` or ``failed``.
        reason: Why it failed (``unreadable_tile``, ``detector_error``) with the message.
        view_hw: ``(height, width)`` the model saw it at (None if unread).
        gsd: The view's GSD (None if unread).
        text: What the detector wrote (kept so a parser fix can be re-applied).
        n_objects: Objects kept by the parser.
        parse: The parse counts (candidates, ok, repaired, dropped by reason).
        seconds: Time spent on the tile (reading, detecting, parsing).
    """

    index: int
    window_xyxy_px: tuple[int, int, int, int]
    status: Literal["ok", "failed"]
    reason: str | None = None
    view_hw: tuple[int, int] | None = None
    gsd: GSD | None = None
    text: str | None = None
    n_objects: int = 0
    parse: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gsd"] = None if self.gsd is None else self.gsd.to_dict()
        return d


@dataclass
class SceneDetections:
    """The merged detections of one scene, with the account of every tile.

    Attributes:
        source: The raster.
        source_hw: ``(height, width)`` in pixels.
        georef: Its georeferencing (how features go on the map).
        config: How it was run.
        windows_xyxy_px: ``(T, 4)`` the tiles' windows.
        quads_px: ``(N, 4, 2)`` merged detections in source pixels.
        labels: ``(N,)`` their classes.
        tile_index: ``(N,)`` the tile each was found in.
        tiles: One :class:`TileOutcome` per tile.
        ledger: Tiles read: ok or failed with a reason.
        merged_away: Detections the merge removed as duplicates across tiles.
    """

    source: Path
    source_hw: tuple[int, int]
    georef: Georef
    config: SceneDetectConfig
    windows_xyxy_px: np.ndarray
    quads_px: np.ndarray
    labels: np.ndarray
    tile_index: np.ndarray
    tiles: list[TileOutcome]
    ledger: Ledger
    merged_away: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def parse_counts(self) -> dict[str, Any]:
        """Parse counts summed over the tiles."""
        total: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        for t in self.tiles:
            for k in ("candidates", "ok", "repaired"):
                total[k] += int(t.parse.get(k, 0))
            dropped.update(t.parse.get("dropped", {}))
        return {**total, "dropped": dict(sorted(dropped.items()))}

    def summary(self) -> dict[str, Any]:
        """Counts for people and for the output file's metadata."""
        return {
            "source": str(self.source),
            "source_wh_px": [self.source_hw[1], self.source_hw[0]],
            "tiles": self.ledger.to_dict(),
            "objects": len(self),
            "merged_away": self.merged_away,
            "parse": self.parse_counts,
            "config": {k: v for k, v in asdict(self.config).items() if k != "prompt"}
            | {"prompt": self.config.instruction},
        }

    def features(self) -> list[Feature]:
        """One feature per merged object: its quad in source pixels, class, score (null:
        text carries none), the quad, the tile and the GSD of the view it was found in."""
        out = []
        for q, label, ti in zip(self.quads_px, self.labels, self.tile_index, strict=True):
            tile = self.tiles[int(ti)]
            gsd = tile.gsd
            props = {
                "class": str(label),
                "score": None,
                "quad_px": [round(float(v), 2) for v in q.reshape(-1)],
                "gsd_m": gsd.point_m if gsd is not None and gsd.is_known else None,
                "gsd": None if gsd is None else str(gsd),
                "tile": int(ti),
                "tile_window_xyxy_px": list(tile.window_xyxy_px),
            }
            out.append(Feature(shapely.Polygon(q), props))
        return out

    def save(self, path: str | Path) -> VectorReport:
        """Write the objects (GeoJSON in WGS84 or GeoPackage in the raster's CRS, by the
        suffix; pixels when the raster has no georeferencing)."""
        return write_features(
            path, self.features(), self.georef, layer="detections", meta=self.summary()
        )

    def save_tiles(self, path: str | Path) -> Path:
        """Write the tile ledger and every tile's outcome, raw text included (JSON)."""
        doc = {**self.summary(), "tile_outcomes": [t.to_dict() for t in self.tiles]}
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return Path(path)


def tile_windows(width: int, height: int, tile_px: int, overlap_px: int) -> np.ndarray:
    """``(T, 4)`` integer windows ``[x1, y1, x2, y2]`` covering the raster, row by row:
    :func:`~earthvlm.geo.dota_split.sliding_windows` clipped to the raster (a side
    shorter than a tile gets one window, the side itself)."""
    win = sliding_windows(width, height, size=tile_px, gap=overlap_px)
    win[:, 2] = np.minimum(win[:, 2], width)
    win[:, 3] = np.minimum(win[:, 3], height)
    return win


def detect_scene(
    source: str | Path | UHRReader,
    detect: DetectFn,
    config: SceneDetectConfig | None = None,
    *,
    resolution: Resolution | None = None,
    gsd: GSD | None = None,
    reader_config: ReaderConfig | None = None,
    progress: Callable[[TileOutcome], None] | None = None,
) -> SceneDetections:
    """Detect objects over a whole scene, tile by tile, and merge them.

    Args:
        source: A raster path, or an open reader (then ``resolution``, ``gsd`` and
            ``reader_config`` are its own).
        detect: One tile's detection as text (:func:`model_detector` for a model).
        config: Tiling, prompt, frames and merge.
        resolution: The model's pixel policy (``Resolution.from_processor``); needed
            with a path.
        gsd: The source GSD; ``None`` measures it from the georeferencing.
        reader_config: How a path is read (budgets, bands, VRTs).
        progress: Called after each tile with its outcome.

    Raises:
        RasterError: If the raster cannot be opened. A tile that cannot be read, or on
            which the detector fails, is counted as failed and the run goes on.
    """
    cfg = config or SceneDetectConfig()
    if not isinstance(source, UHRReader) and resolution is None:
        raise ValueError("detect_scene(path, ...) needs the model's resolution (pixel policy)")
    # rasterio sets GDAL's cache size (in bytes) for the block and restores it after
    with rasterio.Env(GDAL_CACHEMAX=cfg.block_cache_mib << 20):
        if isinstance(source, UHRReader):
            return _run(source, detect, cfg, progress)
        with UHRReader(source, resolution, gsd=gsd, config=reader_config) as reader:
            return _run(reader, detect, cfg, progress)


def _run(
    reader: UHRReader,
    detect: DetectFn,
    cfg: SceneDetectConfig,
    progress: Callable[[TileOutcome], None] | None,
) -> SceneDetections:
    georef = Georef.from_raster(reader.path, allow_vrt=reader.config.allow_vrt)
    h, w = reader.source_hw
    windows = tile_windows(w, h, cfg.tile_px, cfg.overlap_px)
    ledger = Ledger("tiles")
    tiles: list[TileOutcome] = []
    quads: list[np.ndarray] = []  # per tile, in the tile's window frame (source px)
    labels: list[str] = []
    index: list[int] = []
    prompt = cfg.instruction
    for i, win in enumerate(windows.tolist()):
        outcome, tile_quads, tile_labels = _tile(reader, detect, cfg, prompt, i, tuple(win))
        if outcome.status == "ok":
            ledger.count_ok()
            quads.append(tile_quads)
            labels += tile_labels
            index += [i] * len(tile_labels)
        else:
            ledger.count_failed(str(outcome.reason).split(":", 1)[0])
        tiles.append(outcome)
        if progress is not None:
            progress(outcome)
    stacked = np.concatenate(quads) if quads else np.zeros((0, 4, 2))
    merged = merge_detections(windows, index, stacked, labels, None, iou_thr=cfg.nms_iou)
    return SceneDetections(
        source=reader.path,
        source_hw=(h, w),
        georef=georef,
        config=cfg,
        windows_xyxy_px=windows,
        quads_px=merged.quads_px,
        labels=merged.labels,
        tile_index=np.asarray(index, dtype=np.int64)[merged.rows],
        tiles=tiles,
        ledger=ledger,
        merged_away=len(labels) - len(merged.rows),
    )


def _tile(
    reader: UHRReader,
    detect: DetectFn,
    cfg: SceneDetectConfig,
    prompt: str,
    i: int,
    win: tuple[int, int, int, int],
) -> tuple[TileOutcome, np.ndarray, list[str]]:
    """One tile: read, detect, parse; its outcome and its objects in the window frame."""
    start = time.perf_counter()
    none = np.zeros((0, 4, 2))
    try:
        view = reader.read(win)
    except RasterError as e:
        reason = f"{UNREADABLE_TILE}: {e}"
        return TileOutcome(i, win, "failed", reason, seconds=time.perf_counter() - start), none, []
    try:
        text = detect(view, prompt)
    except (RuntimeError, ValueError, EarthVLMError) as e:  # e.g. out of memory on one tile
        reason = f"{DETECTOR_ERROR}: {type(e).__name__}: {e}"
        out = TileOutcome(
            i, win, "failed", reason, view.hw, view.gsd, seconds=time.perf_counter() - start
        )
        return out, none, []
    wh, ww = view.window_hw
    fw, fh = (
        (float(ww), float(wh)) if cfg.box_frame == "window_px" else view.frame_extent(cfg.box_frame)
    )
    parsed = parse_detections(text, width=fw, height=fh, classes=cfg.classes, fmt=cfg.fmt)
    coords = np.array([o.coords for o in parsed.objects], dtype=np.float64)
    if len(coords):
        q = as_quads(view_to_source_px(coords, cfg.box_frame, view))
        q -= np.array(win[:2], dtype=np.float64)  # the merge takes the window frame
    else:
        q = none
    r = parsed.report
    counts = {
        "style": r.style,
        "candidates": r.candidates,
        "ok": r.ok,
        "repaired": r.repaired,
        "dropped": dict(r.dropped),
        "repairs": dict(r.repairs),
    }
    outcome = TileOutcome(
        i,
        win,
        "ok",
        None,
        view.hw,
        view.gsd,
        text,
        len(parsed.objects),
        counts,
        time.perf_counter() - start,
    )
    return outcome, q, [o.label for o in parsed.objects]


# -- detectors ----------------------------------------------------------------------------


def model_detector(model: EarthVLM, *, max_new_tokens: int = 512) -> DetectFn:
    """A model's detection as text on one view: the view's image, then the prompt (for a
    GSD-as-text model the view's GSD sentence between them, as its records have it),
    greedy decoding with the view's GSD (:meth:`EarthVLM.generate`)."""
    from PIL import Image

    from earthvlm.data.gsd_text import gsd_sentence
    from earthvlm.uhr.loop import greedy_ids

    bb = model.backbone
    template = bb.chat_template()
    tokenizer = bb.tokenizer
    special = sorted({str(t) for t in getattr(tokenizer, "all_special_tokens", [])})

    def detect(view: View, prompt: str) -> str:
        parts: list[dict[str, Any]] = [{"type": "image", "image": Image.fromarray(view.pixels)}]
        if model.gsd_as_text and view.gsd.is_known:
            parts.append({"type": "text", "text": gsd_sentence(view.gsd.point_m) + " "})
        parts.append({"type": "text", "text": prompt})
        inputs = bb.processor.apply_chat_template(
            [{"role": "user", "content": parts}],
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            add_generation_prompt=True,
        )
        ids = greedy_ids(model, inputs, [view.gsd], max_new_tokens)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        for token in special:  # a random model can spell a control token in pieces
            text = text.replace(token, "")
        return text

    return detect


def oracle_detector(
    quads_px: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    *,
    box_frame: str = "window_px",
    fmt: DetectionFormat = "quad",
    iof_thr: float = 0.7,
) -> DetectFn:
    """A detector that writes the true objects of each tile as text: the objects with at
    least ``iof_thr`` of their area inside the tile (clipped to it, DOTA's split rule), in
    ``box_frame``, serialised as detection targets are. For tests and the smoke figure:
    it proves the path from text to the map, with no model in the way."""
    q = as_quads(quads_px)
    names = list(labels)

    def detect(view: View, prompt: str) -> str:
        (got,) = split_objects(q, np.array([view.window_xyxy_px]), iof_thr=iof_thr)
        local = got.quads_px  # window frame, source px
        if box_frame != "window_px" and len(local):
            local = px_to_frame(local, box_frame, source_hw=view.window_hw, resized_hw=view.hw)
        return serialise_detections(
            [(names[r], g) for r, g in zip(got.rows, local, strict=True)], fmt=fmt
        )

    return detect


__all__ = [
    "DETECTOR_ERROR",
    "UNREADABLE_TILE",
    "DetectFn",
    "SceneDetectConfig",
    "SceneDetections",
    "TileOutcome",
    "detect_scene",
    "model_detector",
    "oracle_detector",
    "tile_windows",
]
