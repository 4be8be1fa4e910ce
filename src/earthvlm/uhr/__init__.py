"""Ultra-high-resolution (UHR) images: views with their own GSD, read by window, and the
crop-and-zoom tool.

* :mod:`~earthvlm.uhr.view`: :class:`View`, the pixels a model sees, the source window
  they show and the GSD of what they show; boxes on it map back to source pixels.
* :mod:`~earthvlm.uhr.reader`: :class:`UHRReader`, the global view from the best overview
  and crops read by window (tiled GeoTIFF / COG), or a bounded whole decode (JPEG, PNG).
* :mod:`~earthvlm.uhr.tool`: the ``zoom_in`` tool in Qwen's tool-call format: schema,
  a parser that never raises, and :func:`execute`.

NumPy, rasterio and PIL only (no torch): the model-driven zoom loop sits on top.
"""

from earthvlm.uhr.reader import ReaderConfig, UHRReader
from earthvlm.uhr.tool import (
    ToolCallError,
    ZoomCall,
    ZoomConfig,
    ZoomResult,
    execute,
    format_tool_call,
    parse_tool_call,
    zoom_tool_schema,
    zoom_window,
)
from earthvlm.uhr.view import View

__all__ = [
    "ReaderConfig",
    "ToolCallError",
    "UHRReader",
    "View",
    "ZoomCall",
    "ZoomConfig",
    "ZoomResult",
    "execute",
    "format_tool_call",
    "parse_tool_call",
    "zoom_tool_schema",
    "zoom_window",
]
