"""Whole-scene detection on the map: recall and precision in map coordinates, and time and
peak memory against the scene's size.

For each scene side (default 2048, 4096, 8192, 16384 px; ``--quick``: 1024, 2048) a
synthetic UHR scene is written once (``earthvlm.synth``: farmland at 0.3 m in UTM 33N,
tiled GeoTIFF with overviews, objects of known position). Then, each in a fresh process,
the same whole-scene detection (1024 px tiles, 200 px overlap, detection as text, parse,
rotated-NMS merge, GeoJSON) three ways:

* baseline, "whole raster decoded": the naive path, the raster read into memory whole
  (``ds.read()``) and the tiles sliced from it, then the same text, merge and GeoJSON as
  ours (``scene_detect``'s tile loop over an in-memory reader);
* ours, oracle: :func:`earthvlm.uhr.scene_detect.detect_scene` reading tile by tile, with
  a detector that writes each tile's true objects as text (the smoke signal of the path
  from text to the map: no model in the way);
* ours, tiny random model: the same with a tiny randomly initialised Qwen3-VL backbone
  writing up to ``--max-new-tokens`` per tile (what a model costs per tile; its objects
  are noise; ``--quick`` runs it on the smallest scene only).

Recall and precision: the GeoJSON is read back with GDAL's reader (pyogrio; the JSON
itself without it), its WGS84 polygons projected to UTM metres and matched one to one,
per class, at IoU >= 0.5 against the scene's labels put in UTM by the scene's own
geotransform. Time is the work after imports; memory is the process's peak resident set
(``VmHWM``) and its rise above the process after imports. ``--figures DIR`` writes the
time and memory plot and a picture of the features over the largest scene.

Usage::

    .venv/bin/python benchmarks/bench_scene_detect.py [--quick] [--sizes 2048 8192]
        [--figures docs/scene-detect] [--no-model]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TILE_PX, OVERLAP_PX = 1024, 200
GSD_M, KIND, SEED = 0.3, "farmland", 1
QUICK_SIZES, FULL_SIZES = (1024, 2048), (2048, 4096, 8192, 16384)
ARMS = {
    "baseline": "baseline: whole raster decoded, oracle text",
    "oracle": "ours: tiles by window, oracle text",
    "model": "ours: tiles by window, tiny random model",
}


def _rss_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (``ru_maxrss`` without /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the children ---------------------------------------------------------------------------


def generate(work: Path, size: int) -> dict[str, Any]:
    from earthvlm.synth.uhr import write_uhr_scene

    scene = write_uhr_scene(work / f"scene_{size}.tif", size, GSD_M, KIND, SEED)
    labels = {
        "quads_px": [lb.quad_px.reshape(-1).tolist() for lb in scene.labels],
        "classes": [lb.cls for lb in scene.labels],
        "transform": list(scene.transform)[:6],
        "crs": scene.crs,
    }
    (work / f"labels_{size}.json").write_text(json.dumps(labels))
    return {"objects": len(scene.labels)}


class WholeRaster:
    """The baseline's reader: the raster decoded whole, tiles sliced from memory (what a
    reader that is not windowed does); views are native, as ours are at this budget."""

    def __init__(self, path: Path, gsd: Any) -> None:
        import rasterio

        from earthvlm.uhr.reader import ReaderConfig

        with rasterio.open(path) as ds:
            self.pixels = ds.read().transpose(1, 2, 0)  # (H, W, 3): the whole scene
        self.path, self.config, self.gsd = path, ReaderConfig(), gsd
        self.source_hw = self.pixels.shape[:2]

    def read(self, window: tuple[int, int, int, int]) -> Any:
        from earthvlm.uhr.view import View

        x1, y1, x2, y2 = window
        return View(self.pixels[y1:y2, x1:x2], tuple(window), self.gsd, self.source_hw)


def detect(work: Path, size: int, arm: str, max_new_tokens: int) -> dict[str, Any]:
    """One arm's whole-scene detection; its GeoJSON is written beside the scene."""
    import numpy as np

    from earthvlm.data.resolution import Resolution
    from earthvlm.scale.gsd import GSD
    from earthvlm.uhr import scene_detect as sd

    path = work / f"scene_{size}.tif"
    labels = json.loads((work / f"labels_{size}.json").read_text())
    quads = np.array(labels["quads_px"], dtype=np.float64)
    cfg = sd.SceneDetectConfig(tile_px=TILE_PX, overlap_px=OVERLAP_PX)
    t0 = time.perf_counter()
    if arm == "model":
        from earthvlm.models import EarthVLM, build_tiny_backbone

        model = EarthVLM.from_backbone(build_tiny_backbone(), name="tiny random")
        resolution = Resolution.from_processor(model.backbone.processor.image_processor)
        detector = sd.model_detector(model, max_new_tokens=max_new_tokens)
        t0 = time.perf_counter()  # the model's build is not the scene's cost
        found = sd.detect_scene(path, detector, cfg, resolution=resolution)
    else:
        detector = sd.oracle_detector(quads, labels["classes"])
        if arm == "oracle":
            found = sd.detect_scene(path, detector, cfg, resolution=Resolution(32, 1024, 1 << 20))
        else:
            reader = WholeRaster(path, GSD.exact(GSD_M, "metadata", "benchmark"))
            found = sd._run(reader, detector, cfg, None)  # the same tile loop, in memory
    out = work / f"{arm}_{size}.geojson"
    report = found.save(out)
    seconds = time.perf_counter() - t0
    return {
        "s": seconds,
        "tiles": found.ledger.read,
        "tiles_ok": found.ledger.ok,
        "objects": len(found),
        "written": report.written,
        "geojson": str(out),
    }


def child(kind: str, work: Path, size: int, max_new_tokens: int) -> None:
    import numpy  # noqa: F401  (common to every arm: not counted as work)

    import earthvlm.uhr.scene_detect

    if kind == "model":
        import earthvlm.models  # noqa: F401
    after_imports = _rss_mib("VmRSS")
    t0 = time.perf_counter()
    out = generate(work, size) if kind == "generate" else detect(work, size, kind, max_new_tokens)
    out.setdefault("s", time.perf_counter() - t0)
    out.update(peak=_rss_mib("VmHWM"), imports=after_imports)
    print(json.dumps(out))


def measure(kind: str, work: Path, size: int, max_new_tokens: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        str(work),
        "--sizes",
        str(size),
        "--max-new-tokens",
        str(max_new_tokens),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} {size} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- scoring on the map ---------------------------------------------------------------------


def read_polygons(path: Path) -> tuple[list[Any], list[str], str]:
    """The GeoJSON's polygons (WGS84) and classes, read by GDAL (pyogrio) when installed."""
    import shapely

    try:
        import pyogrio
    except ImportError:
        doc = json.loads(path.read_text())
        geoms = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]
        return geoms, [f["properties"]["class"] for f in doc["features"]], "json"
    info = pyogrio.read_info(path)
    if info["features"] == 0:
        return [], [], "pyogrio"
    _, _, wkb, fields = pyogrio.raw.read(path)
    classes = list(fields[list(info["fields"]).index("class")])
    return list(shapely.from_wkb(wkb)), classes, "pyogrio"


def score_on_map(work: Path, size: int, geojson: Path) -> dict[str, Any]:
    """Recall and precision at IoU >= 0.5 in UTM metres, one-to-one per class."""
    import numpy as np
    import shapely
    from pyproj import Transformer
    from rasterio.transform import Affine

    labels = json.loads((work / f"labels_{size}.json").read_text())
    t = Affine(*labels["transform"])
    truth = [
        shapely.Polygon([t @ (x, y) for x, y in np.reshape(q, (4, 2))]) for q in labels["quads_px"]
    ]
    geoms, classes, reader = read_polygons(geojson)
    to_utm = Transformer.from_crs("EPSG:4326", labels["crs"], always_xy=True)
    pred = [shapely.transform(g, lambda xy: np.stack(to_utm.transform(*xy.T), 1)) for g in geoms]
    free = set(range(len(pred)))
    ious = []
    for poly, cls in zip(truth, labels["classes"], strict=True):
        cand = {
            i: pred[i].intersection(poly).area / pred[i].union(poly).area
            for i in free
            if classes[i] == cls and pred[i].intersects(poly)
        }
        best = max(cand, key=cand.get, default=None)
        if best is not None and cand[best] >= 0.5:
            free.discard(best)
            ious.append(cand[best])
    matched = len(ious)
    return {
        "truth": len(truth),
        "pred": len(pred),
        "recall": matched / len(truth) if truth else float("nan"),
        "precision": matched / len(pred) if pred else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "reader": reader,
    }


# -- figures --------------------------------------------------------------------------------


def plot_scaling(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
    for arm, name in ARMS.items():
        pts = sorted((r["size"], r["s"], r["peak"]) for r in rows if r["arm"] == arm)
        if not pts:
            continue
        sides, secs, peaks = zip(*pts, strict=True)
        mp = [s * s / 1e6 for s in sides]
        ax_t.plot(mp, secs, "o-", label=name)
        ax_m.plot(mp, peaks, "o-", label=name)
    for ax, what in ((ax_t, "time (s)"), (ax_m, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("scene size (megapixels)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=8)
    fig.suptitle(f"whole-scene detection, {TILE_PX} px tiles, {OVERLAP_PX} px overlap")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def draw_features(work: Path, size: int, geojson: Path, out: Path) -> None:
    """The scene's global view with the GeoJSON's features (projected back to pixels
    through the inverse geotransform) in red and the labels in green, and native insets."""
    import numpy as np
    from PIL import Image, ImageDraw
    from pyproj import Transformer
    from rasterio.transform import Affine

    from earthvlm.data.resolution import Resolution
    from earthvlm.uhr.reader import UHRReader

    labels = json.loads((work / f"labels_{size}.json").read_text())
    inv = ~Affine(*labels["transform"])
    to_utm = Transformer.from_crs("EPSG:4326", labels["crs"], always_xy=True)
    geoms, _, _ = read_polygons(geojson)
    found = []
    for g in geoms:
        lon, lat = np.asarray(g.exterior.coords).T
        e, n = to_utm.transform(lon, lat)
        found.append(np.array([inv @ (x, y) for x, y in zip(e, n, strict=True)]))
    truth = [np.reshape(q, (4, 2)) for q in labels["quads_px"]]
    with UHRReader(work / f"scene_{size}.tif", Resolution(32, 32 * 32, 1 << 20)) as reader:
        overview = reader.global_view(max_pixels=768 * 768)
        s = overview.hw[1] / size
        base = Image.fromarray(np.ascontiguousarray(overview.pixels)).convert("RGB")
        draw = ImageDraw.Draw(base)
        for ring in found:
            cx, cy = ring[:-1].mean(axis=0) * s
            draw.ellipse((cx - 9, cy - 9, cx + 9, cy + 9), outline=(230, 40, 40), width=2)
        insets = []
        for k, q in enumerate(truth[:6]):
            cx, cy = q.mean(axis=0)
            half = 64
            x1 = int(min(max(cx - half, 0), size - 2 * half))
            y1 = int(min(max(cy - half, 0), size - 2 * half))
            view = reader.read((x1, y1, x1 + 2 * half, y1 + 2 * half))
            im = Image.fromarray(np.ascontiguousarray(view.pixels)).resize((256, 256))
            d = ImageDraw.Draw(im)
            rings = [(q, (40, 220, 40), 5)] + [(r, (230, 40, 40), 2) for r in found]
            for ring, colour, width in rings:  # the label wide, the feature over it
                pts = [((x - x1) * 2, (y - y1) * 2) for x, y in ring]
                if any(0 <= px < 256 and 0 <= py < 256 for px, py in pts):
                    d.polygon(pts, outline=colour, width=width)
            d.text((4, 4), f"{k + 1}: {labels['classes'][k]}", fill=(255, 255, 255))
            insets.append(im)
            draw.text((cx * s + 10, cy * s - 6), str(k + 1), fill=(255, 255, 0))
    cols = 3
    canvas = Image.new("RGB", (base.width + cols * 260, max(base.height, 2 * 260) + 24), "white")
    canvas.paste(base, (0, 0))
    for k, im in enumerate(insets):
        canvas.paste(im, (base.width + 4 + (k % cols) * 260, (k // cols) * 260))
    ImageDraw.Draw(canvas).text(
        (4, canvas.height - 20),
        f"{size} x {size} px scene: GeoJSON features (red, read back and projected to pixels) "
        "over the labels (green); insets at native resolution",
        fill=(0, 0, 0),
    )
    canvas.save(out)


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help=f"sizes {QUICK_SIZES}, the model on the first"
    )
    ap.add_argument("--sizes", type=int, nargs="+", help=f"scene sides (default {FULL_SIZES})")
    ap.add_argument("--no-model", action="store_true", help="skip the tiny random model arm")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="model tokens per tile")
    ap.add_argument("--figures", type=Path, help="write the plot and the picture here")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "WORK"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    if args.child:
        child(args.child[0], Path(args.child[1]), sizes[0], args.max_new_tokens)
        return
    arms = [a for a in ARMS if not (a == "model" and args.no_model)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_scene_detect_") as tmp:
        work = Path(tmp)
        for size in sizes:
            gen = measure("generate", work, size, args.max_new_tokens)
            mib = (work / f"scene_{size}.tif").stat().st_size / 2**20
            print(
                f"scene {size} x {size} px: {gen['objects']} objects, file {mib:.0f} MiB, "
                f"written in {gen['s']:.1f} s"
            )
            for arm in arms:
                if arm == "model" and args.quick and size != sizes[0]:
                    continue  # a smoke run: the model's cost once
                r = measure(arm, work, size, args.max_new_tokens)
                r.update(arm=arm, size=size, **score_on_map(work, size, Path(r["geojson"])))
                rows.append(r)
        print(
            f"{'arm':44s} {'side':>6s} {'tiles':>6s} {'time s':>8s} {'ms/tile':>8s} "
            f"{'peak MiB':>9s} {'+imports':>9s} {'recall':>7s} {'precision':>9s}"
        )
        for r in rows:
            print(
                f"{ARMS[r['arm']]:44s} {r['size']:6d} {r['tiles']:6d} {r['s']:8.2f} "
                f"{1000 * r['s'] / r['tiles']:8.1f} {r['peak']:9.0f} "
                f"{r['peak'] - r['imports']:9.0f} {r['recall']:7.2f} "
                f"{r['precision']:9.2f}"
            )
        by = {(r["arm"], r["size"]): r for r in rows}
        for size in sizes:
            b, o = by[("baseline", size)], by[("oracle", size)]
            print(
                f"{size} px: memory above imports, baseline / ours "
                f"{(b['peak'] - b['imports']) / max(o['peak'] - o['imports'], 1):.1f}x; "
                f"time baseline / ours {b['s'] / o['s']:.2f}x"
            )
        lo, hi = min(sizes), max(sizes)
        for arm in arms:
            if (arm, hi) not in by or lo == hi:
                continue
            a, z = by[(arm, lo)], by[(arm, hi)]
            print(
                f"{ARMS[arm]}: {hi} px vs {lo} px: area x{(hi / lo) ** 2:.0f}, time "
                f"x{z['s'] / a['s']:.1f}, peak RSS x{z['peak'] / a['peak']:.2f}"
            )
        print("readers:", sorted({r["reader"] for r in rows}))
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            plot_scaling(rows, args.figures / "scene_detect_scaling.png")
            oracle = by[("oracle", hi)]
            draw_features(work, hi, Path(oracle["geojson"]), args.figures / "scene_detect_map.png")
            (args.figures / "scene_detect_rows.json").write_text(json.dumps(rows, indent=1))
            print(f"figures: {args.figures}")


if __name__ == "__main__":
    main()
