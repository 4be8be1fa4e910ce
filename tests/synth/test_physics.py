"""The physics later mechanisms rely on: sizes scale as size / GSD, small things vanish,
ambiguous pairs need the GSD, SAR sees through clouds, homogeneous scenes are scale-free."""

from __future__ import annotations

import math

import numpy as np
import pytest

from earthvlm.synth.catalogue import CLASSES, PlacedObject
from earthvlm.synth.chips import CHIP_CLASSES, render_chip
from earthvlm.synth.labels import label_object, label_scene
from earthvlm.synth.render import Canvas, cloud_alpha, optical_view, sar_view
from earthvlm.synth.scene import MIN_PLACED_PX, generate_scene


def _car(x: float, y: float, length: float = 4.5) -> PlacedObject:
    return PlacedObject("small vehicle", x, y, length, length * 0.4, 30.0, "paint_white")


@pytest.mark.parametrize("gsd", [0.05, 0.1, 0.3, 1.0, 3.0, 10.0])
def test_painted_area_is_the_physical_area_over_gsd_squared(gsd: float) -> None:
    # exact-area coverage: the painted pixel area equals L * W / gsd^2, even below a pixel
    n = max(16, math.ceil(5.0 / gsd) + 4)  # the whole car fits
    canvas = Canvas(n, n, gsd)
    canvas.fill("asphalt")
    car = _car(n * gsd / 2, n * gsd / 2)
    area_px = canvas.paint_object(car)
    expected = car.length_m * car.width_m / gsd**2
    assert area_px == pytest.approx(expected, rel=0.08, abs=0.02)
    assert label_object(car, 0, canvas).length_px == pytest.approx(4.5 / gsd)


def _car_difference(gsd: float) -> np.ndarray:
    n = 32
    base = Canvas(n, n, gsd)
    base.fill("asphalt")
    with_car = Canvas(n, n, gsd)
    with_car.fill("asphalt")
    with_car.paint_object(_car(n * gsd / 2, n * gsd / 2))
    a = optical_view(base, np.random.default_rng(0)).astype(int)
    b = optical_view(with_car, np.random.default_rng(0)).astype(int)
    return np.abs(a - b).max(axis=0)


def test_a_car_is_visible_at_fine_gsd_and_gone_at_coarse_gsd() -> None:
    fine, coarse, coarsest = (_car_difference(g) for g in (0.3, 10.0, 30.0))
    # 0.3 m: a bright white shape of ~15 x 6 px on asphalt
    assert (fine > 30).sum() >= 60 and fine.max() > 100
    # 10 m: 8 m^2 of car in a 100 m^2 pixel: a faint speck of a few pixels, no shape
    assert (coarse > 10).sum() <= 4 and coarse.max() < fine.max() / 5
    assert coarsest.max() < 8


def test_objects_below_a_pixel_are_not_placed() -> None:
    for gsd in (0.3, 3.0, 20.0):
        scene = generate_scene("urban", 128 * gsd, 128 * gsd, gsd, seed=5)
        assert all(o.length_m / gsd >= MIN_PLACED_PX for o in scene.objects)
    fine = generate_scene("urban", 64 * 0.3, 64 * 0.3, 0.3, seed=5)
    coarse = generate_scene("urban", 64 * 20, 64 * 20, 20.0, seed=5)
    assert "small vehicle" not in {o.cls for o in coarse.objects}
    assert any(o.cls == "small vehicle" for o in fine.objects) or not fine.objects


def test_placed_objects_lie_inside_the_image() -> None:
    for kind in ("urban", "harbour", "industrial", "airport", "suburban"):
        gsd = 0.8
        scene = generate_scene(kind, 128 * gsd, 128 * gsd, gsd, seed=11)
        canvas = Canvas(128, 128, gsd)
        for lb in label_scene(scene, canvas):
            assert lb.quad_px.min() >= 0 and lb.quad_px.max() <= 128


def _features(img: np.ndarray) -> np.ndarray:
    """Pixel statistics a simple classifier could use: object area, colour, contrast."""
    x = img.astype(np.float64)
    bg = np.median(x.reshape(3, -1), axis=1)[:, None, None]
    diff = np.abs(x - bg).sum(axis=0)
    fg = diff > 60
    area = max(fg.sum(), 1.0)
    return np.array([math.log(area), x.mean(), x.std(), diff.mean(), fg.mean()])


def _logreg_accuracy(xtr, ytr, xte, yte, steps: int = 3000) -> float:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-a @ w))
        w -= 0.5 * a.T @ (p - ytr) / len(ytr)
    return float((((b @ w) > 0) == yte).mean())


@pytest.mark.parametrize("pair", [("small vehicle", "building"), ("storage tank", "roundabout")])
def test_ambiguous_pairs_need_the_gsd(pair: tuple[str, str]) -> None:
    rng = np.random.default_rng(0)
    rows, labels, log_gsd = [], [], []
    for k in range(400):
        chip = render_chip(pair[k % 2], rng)
        rows.append(_features(chip.image))
        labels.append(k % 2)
        log_gsd.append(math.log10(chip.gsd_m))
    x, y, g = np.array(rows), np.array(labels), np.array(log_gsd)[:, None]
    tr, te = slice(0, 300), slice(300, 400)
    blind = _logreg_accuracy(x[tr], y[tr], x[te], y[te])
    informed = _logreg_accuracy(np.c_[x, g][tr], y[tr], np.c_[x, g][te], y[te])
    assert blind < 0.65, f"pixels alone separate {pair}: {blind:.2f}"
    assert informed > 0.9, f"pixels + GSD do not separate {pair}: {informed:.2f}"


def test_chip_pairs_share_template_and_pixel_size_range() -> None:
    for a, b in (("small vehicle", "building"), ("storage tank", "roundabout")):
        ca, cb = CHIP_CLASSES[a], CHIP_CLASSES[b]
        assert ca.template == cb.template and ca.aspect == cb.aspect
        assert ca.pair == b and cb.pair == a
        # disjoint physical lengths: length_px * gsd tells them apart exactly
        assert ca.length_m[1] < cb.length_m[0] or cb.length_m[1] < ca.length_m[0]
    rng = np.random.default_rng(1)
    for cls in CHIP_CLASSES:
        chip = render_chip(cls, rng)
        assert 12 <= chip.length_px <= 28
        assert chip.length_m == pytest.approx(chip.length_px * chip.gsd_m)
        assert abs(chip.centre_px[0] - 32) <= 4 and abs(chip.centre_px[1] - 32) <= 4


def test_sar_shows_what_clouds_hide() -> None:
    gsd = 2.0
    n = 96
    empty = Canvas(n, n, gsd)
    empty.fill("water")
    ships = Canvas(n, n, gsd)
    ships.fill("water")
    for k in range(3):
        obj = PlacedObject(
            "ship", 40 + 50 * k, 96.0, 80.0, 80 * CLASSES["ship"].aspect, 0.0, "paint_grey"
        )
        ships.paint_object(obj)
    clouds = cloud_alpha(ships, 1.0, seed=3)
    assert clouds.min() > 0.99  # fully overcast

    def optical(c: Canvas) -> np.ndarray:
        return optical_view(c, np.random.default_rng(0), clouds).astype(int)

    def sar(c: Canvas) -> np.ndarray:
        return sar_view(c, np.random.default_rng(0)).astype(int)

    assert np.abs(optical(ships) - optical(empty)).max() <= 2  # hidden under the cloud
    sar_diff = sar(ships) - sar(empty)
    assert sar_diff.max() > 80  # metal hulls on dark water: bright in SAR
    clear = optical_view(ships, np.random.default_rng(0)).astype(int)
    assert np.abs(clear - optical_view(empty, np.random.default_rng(0)).astype(int)).max() > 30


def test_water_is_dark_and_buildings_double_bounce_in_sar() -> None:
    gsd = 1.0
    c = Canvas(64, 64, gsd)
    c.fill("grass")
    c.paint_shape("rect", 16, 32, 24, 60, 0.0, "water")
    c.paint_object(PlacedObject("building", 46, 32, 20, 10, 0.0, "roof_grey"))
    img = sar_view(c, np.random.default_rng(0))[0].astype(float)
    water, grass = img[10:54, 8:24].mean(), img[5:15, 30:38].mean()
    wall = img[27:37, 36:37].mean()  # the west wall of the building (x = 36 m)
    assert water < grass - 30
    assert wall > grass + 40


def _stats(kind: str, gsd: float) -> np.ndarray:
    scene = generate_scene(kind, 128 * gsd, 128 * gsd, gsd, seed=2)
    img = optical_view(scene.rasterise(), np.random.default_rng(0)).astype(float)
    grad = np.abs(np.diff(img, axis=2)).mean()
    return np.array([img.mean(), img.std(), grad])


def test_homogeneous_scenes_look_the_same_at_every_gsd() -> None:
    for kind in ("forest", "water", "grassland", "desert"):
        fine, coarse = _stats(kind, 0.1), _stats(kind, 10.0)
        assert np.allclose(fine, coarse, rtol=0.15, atol=1.0), (kind, fine, coarse)
    # a scene with scale cues does not: its texture changes with the GSD
    assert not np.allclose(_stats("urban", 0.1), _stats("urban", 10.0), rtol=0.15, atol=1.0)


def test_plain_chips_are_flat_and_high_contrast_yet_class_blind() -> None:
    rng = np.random.default_rng(3)
    for cls in CHIP_CLASSES:
        chip = render_chip(cls, rng, style="plain")
        img = chip.image.astype(float)
        corner = img[:, :8, :8]  # background only (the object sits near the centre)
        assert corner.std(axis=(1, 2)).max() < 6  # flat, up to sensor noise
        centre = img[:, 28:36, 28:36].mean(axis=(1, 2))
        assert np.abs(centre - corner.mean(axis=(1, 2))).max() > 40  # a bright body
    with pytest.raises(ValueError, match="style"):
        render_chip("plane", rng, style="fancy")


@pytest.mark.parametrize("cls", ["plane", "ship", "storage tank", "building"])
def test_instance_masks_follow_the_drawn_silhouette(cls: str) -> None:
    """The mask is the union of the drawn parts (a plane's cross, not its enclosing
    square): its area matches the painted area to within the outline's pixels."""
    from earthvlm.synth.labels import instance_mask
    from earthvlm.synth.scene import Scene

    gsd, n = 0.5, 128
    c = CLASSES[cls]
    length = float(np.mean(c.length_m)) if c.length_m[1] / 0.5 < 100 else 40.0
    obj = PlacedObject(cls, n * gsd / 2, n * gsd / 2, length, length * c.aspect, 30.0,
                       c.body[0])  # fmt: skip
    scene = Scene("farmland", n * gsd, n * gsd, gsd, 0, objects=[obj])
    canvas = Canvas(n, n, gsd)
    painted = canvas.paint_object(obj)  # the first part's area; parts may extend it
    mask = instance_mask(scene, canvas) == 1
    box_px = obj.length_m * obj.width_m / gsd**2
    perimeter_px = 2 * (obj.length_m + obj.width_m) / gsd
    assert mask.sum() <= box_px + perimeter_px
    if cls == "plane":  # fuselage + wings + tail: well under the enclosing square
        assert mask.sum() < 0.4 * box_px
        assert mask.sum() > 0.9 * painted  # at least the fuselage
    else:
        assert abs(mask.sum() - painted) <= perimeter_px + 0.1 * painted
