"""An OpenAI-compatible server for earthvlm models, with a GSD per image.

``earthvlm serve MODEL`` serves any model :func:`earthvlm.models.saved.load_model`
reads over OpenAI's chat-completions API (Starlette on uvicorn). What it adds to what
vLLM, SGLang or ``transformers serve`` do for a plain Qwen-VL:

* a GSD per image (``"gsd_m"`` on an image part), else the resolver (GeoTIFF
  georeferencing for files under ``--image-root``, then SSE-U, then the neutral value),
  with the GSD used and the resolver's branch returned per image;
* dynamic batching of requests with *different* GSDs through one ``generate``
  (per-sample gates), whose greedy answers equal those sent one at a time;
* the ``zoom_in`` tool executed server-side on the native image (``--zoom``).

Parts: :mod:`.config` (limits), :mod:`.protocol` (the wire format and errors),
:mod:`.images` (images from requests), :mod:`.prepare` (request -> job),
:mod:`.engine` (batching and generation), :mod:`.app` (the ASGI routes),
:mod:`.server` (uvicorn, in the foreground or a thread).
"""

from .app import create_app
from .config import ServeConfig
from .server import RunningServer, run, serve_in_thread

__all__ = ["RunningServer", "ServeConfig", "create_app", "run", "serve_in_thread"]
