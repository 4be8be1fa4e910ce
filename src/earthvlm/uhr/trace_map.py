"""A zoom trace on the map: the views, the boxes asked for, the answer's boxes and masks.

:func:`trace_features` turns one run of the zoom loop (:class:`~earthvlm.uhr.loop.ZoomTrace`)
into :class:`~earthvlm.geo.vector.Feature` s in source pixels, which
:func:`earthvlm.geo.vector.write_features` puts on the map through the raster's
georeferencing. Each feature has a ``kind``:

* ``view``: the source window of every view shown (0 is the global view), with the GSD
  the model was given for it;
* ``requested``: the box the model asked to zoom into (before the crop was grown to the
  minimum size and whole tokens);
* ``answer``: each box in the final answer, read on the view the answer was written after
  (the latest one, the ``zoom_in`` tool's default view) in the backbone's box frame;
* ``mask``: the outline of each ``[SEG]`` mask, decoded on that same view, simplified at
  its GSD (:func:`~earthvlm.geo.mapping.mask_to_polygons_px`).

Reading the answer's boxes from text is the caller's (a grounding answer may carry no
label); this module takes them already read. NumPy and shapely only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from earthvlm.geo.iou import as_quads
from earthvlm.geo.mapping import mask_to_polygons_px, view_to_source_px
from earthvlm.geo.vector import Feature
from earthvlm.uhr.view import View

if TYPE_CHECKING:
    from earthvlm.uhr.loop import ZoomTrace


def _view_props(k: int, view: View) -> dict[str, Any]:
    gsd = view.gsd
    return {
        "view": k,
        "gsd_m": gsd.point_m if gsd.is_known else None,
        "gsd": str(gsd),
    }


def trace_features(
    trace: ZoomTrace,
    *,
    answer_boxes: Sequence[tuple[str, Sequence[float]]] = (),
    box_frame: str = "norm1000",
    masks: np.ndarray | None = None,
) -> list[Feature]:
    """The trace's views, requested boxes, answer boxes and masks as features.

    Args:
        trace: One run of the zoom loop.
        answer_boxes: ``(label, box)`` pairs read from the answer, each box an ``xyxy``
            or a quad in ``box_frame`` on the latest view.
        box_frame: The backbone's box frame (``Backbone.box_frame``), or ``window_px``.
        masks: ``(K, H, W)`` masks (nonzero inside, e.g. ``logits > 0``) decoded on the
            latest view, or None.
    """
    out: list[Feature] = []
    for k, (view, req) in enumerate(zip(trace.views, trace.requested_xyxy_px, strict=True)):
        props = _view_props(k, view)
        x1, y1, x2, y2 = view.window_xyxy_px
        out.append(
            Feature(
                shapely.box(x1, y1, x2, y2),
                {
                    "kind": "view",
                    **props,
                    "window_xyxy_px": [x1, y1, x2, y2],
                    "view_hw": list(view.hw),
                    "downsample": round(view.downsample, 4),
                    "native": view.is_native,
                },
            )
        )
        if req is not None:
            out.append(
                Feature(
                    shapely.box(*req),
                    {
                        "kind": "requested",
                        **props,
                        "requested_xyxy_px": [round(v, 2) for v in req],
                    },
                )
            )
    last = len(trace.views) - 1
    view = trace.views[last]
    for label, box in answer_boxes:
        quad = as_quads(view_to_source_px(np.asarray([box], dtype=np.float64), box_frame, view))[0]
        out.append(
            Feature(
                shapely.Polygon(quad),
                {
                    "kind": "answer",
                    **_view_props(last, view),
                    "label": label,
                    "frame": box_frame,
                    "box": [float(v) for v in box],
                    "quad_px": [round(float(v), 2) for v in quad.reshape(-1)],
                },
            )
        )
    for j, mask in enumerate(masks if masks is not None else ()):
        outline = mask_to_polygons_px(np.asarray(mask), view)
        out.append(Feature(outline, {"kind": "mask", **_view_props(last, view), "mask": j}))
    return out


__all__ = ["trace_features"]
