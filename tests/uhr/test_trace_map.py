"""A zoom trace on the map: each view's window, the box asked for, the answer's boxes
(read on the latest view, in the backbone's frame) and masks, in source pixels."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from earthvlm.data.resolution import Resolution
from earthvlm.synth.uhr import write_uhr_scene
from earthvlm.uhr.loop import ZoomTrace
from earthvlm.uhr.reader import UHRReader
from earthvlm.uhr.trace_map import trace_features


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> ZoomTrace:
    """A trace as the loop leaves it after one zoom: the global view, and a crop read
    natively around the box asked for (no model needed to build one)."""
    scene = write_uhr_scene(
        tmp_path_factory.mktemp("trace") / "s.tif", size_px=1024, gsd_m=0.3, kind="farmland", seed=1
    )
    with UHRReader(scene.path, Resolution(32, 32 * 32, 256 * 256)) as reader:
        views = [reader.global_view(), reader.read((256, 512, 512, 768))]
        return ZoomTrace(
            "Where?",
            scene.path,
            reader.source_hw,
            reader.gsd,
            views,
            [None, (300.0, 540.5, 480.0, 700.0)],
            answer="[0, 0, 500, 1000]",
        )


def test_views_requested_answer_and_masks(trace) -> None:
    assert trace.n_zooms == 1 and trace.views[1].is_native
    crop = trace.views[1]
    x1, y1, x2, y2 = crop.window_xyxy_px
    mask = np.zeros((1, *crop.hw), bool)
    mask[0, : crop.hw[0] // 2] = True  # the top half of the crop
    feats = trace_features(
        trace, answer_boxes=[("answer", [0, 0, 500, 1000])], box_frame="norm1000", masks=mask
    )
    kinds = [f.properties["kind"] for f in feats]
    assert kinds == ["view", "view", "requested", "answer", "mask"]
    assert feats[0].geometry_px.equals(shapely.box(0, 0, 1024, 1024))
    assert feats[1].geometry_px.equals(shapely.box(x1, y1, x2, y2))
    assert feats[1].properties["gsd_m"] == pytest.approx(crop.gsd.point_m)
    assert feats[0].properties["gsd_m"] == pytest.approx(trace.views[0].gsd.point_m)
    req = trace.requested_xyxy_px[1]
    assert feats[2].geometry_px.bounds == pytest.approx(req)
    # the answer's box is on the latest view (the crop): its left half
    assert feats[3].geometry_px.bounds == pytest.approx((x1, y1, (x1 + x2) / 2, y2))
    assert feats[3].properties["view"] == 1
    assert feats[4].geometry_px.bounds == pytest.approx((x1, y1, x2, (y1 + y2) / 2))
