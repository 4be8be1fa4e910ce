"""A validated request -> a :class:`~earthvlm.serve.engine.Job`: images read, the chat
template applied, one GSD per image, limits checked.

Runs in a worker thread of the server (image decoding and tokenising are CPU work the
event loop must not wait on). Every check that a request can fail happens here, before
the job reaches the model thread, so a bad request costs no model time:

* roles: ``system`` / ``developer`` (as system), ``user``, ``assistant``; ``tool``
  messages are refused (the one tool this server knows runs server-side);
* images only in user messages, at most ``max_images``, each within
  ``max_image_pixels``, all within ``max_request_pixels``;
* text must not contain the tokenizer's control tokens (``<|im_start|>``,
  ``<|image_pad|>``, ...): rendered verbatim they would forge turns or image slots (the
  collator refuses them for the same reason);
* the prompt (image tokens included) within ``max_prompt_tokens``; ``max_tokens`` and
  ``n`` within the server's limits;
* a GSD-as-text model (the B3 baseline) gets each known GSD stated after its image, as
  its training records had it (:mod:`earthvlm.data.gsd_text`).

With ``tools`` offering ``zoom_in`` and the server's ``zoom`` on, the request must be one
user message with one image and its question; the job then runs the zoom loop on the
native image (a local file, or the uploaded bytes written to a private temporary file).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from earthvlm.data.gsd_text import gsd_sentence
from earthvlm.models.earthvlm import EarthVLM
from earthvlm.serve.config import ServeConfig
from earthvlm.serve.engine import Job, Prepared, ZoomTask
from earthvlm.serve.images import SUFFIX, ImageCounts, ImageLoader, LoadedImage
from earthvlm.serve.protocol import APIError, ChatRequest, ImagePart, bad_request
from earthvlm.uhr.tool import ZOOM_TOOL_NAME

log = logging.getLogger(__name__)


class Preparer:
    """Turns requests into jobs for one model and server configuration.

    Args:
        model: The served model.
        config: The server's limits.
        lock: Held around processor and tokenizer calls (shared with the model thread).
    """

    def __init__(self, model: EarthVLM, config: ServeConfig, lock: threading.Lock) -> None:
        self.model, self.config, self.lock = model, config, lock
        bb = model.backbone
        self.processor, self.template = bb.processor, bb.chat_template()
        tok = bb.tokenizer
        self.control = sorted(
            {str(t) for t in tok.added_tokens_decoder.values() if getattr(t, "special", False)}
            | {str(t) for t in getattr(tok, "all_special_tokens", [])}
        )
        collator = None
        if config.image_root is not None:
            from earthvlm.data.collate import Collator

            collator = Collator(
                bb, config.image_root, mode="generate", max_read_pixels=config.max_image_pixels
            )
        self.images = ImageLoader(config, collator)
        #: What became of every image requests carried (the app counts the answered ones).
        self.counts = ImageCounts()

    # -- the request --------------------------------------------------------------------

    def prepare(self, req: ChatRequest, deadline: float) -> tuple[Job, list[LoadedImage]]:
        """The job for ``req`` and the images it read (in order).

        Raises:
            APIError: 400 (or 413) for anything the request got wrong. The image that
                caused it is counted failed, images read before it skipped.
        """
        loaded: list[LoadedImage] = []
        try:
            return self._prepare(req, deadline, loaded)
        except APIError:
            self.counts.skipped("request_refused", len(loaded))
            raise

    def _prepare(
        self, req: ChatRequest, deadline: float, loaded: list[LoadedImage]
    ) -> tuple[Job, list[LoadedImage]]:
        cfg = self.config
        max_new = req.requested_max_tokens() or cfg.default_max_tokens
        if max_new > cfg.max_tokens:
            raise bad_request(
                f"max_tokens={max_new} is over this server's limit of {cfg.max_tokens}",
                "max_tokens_too_large",
                "max_tokens",
            )
        if req.n > cfg.max_n:
            raise bad_request(
                f"n={req.n} is over this server's limit of {cfg.max_n}", "n_too_large", "n"
            )
        zoom = self._wants_zoom(req)
        conv, images = self._conversation(req, loaded, keep_raw=zoom)
        temperature = 1.0 if req.temperature is None else req.temperature
        common: dict[str, Any] = {
            "greedy": req.greedy or zoom,
            "temperature": temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "seed": req.seed,
            "max_new_tokens": max_new,
            "stop": req.stop_list,
            "n": req.n,
            "deadline": deadline,
        }
        if zoom:
            return Job(None, zoom=self._zoom_task(req, images), **common), images
        with self.lock:
            try:
                inputs = self.processor.apply_chat_template(
                    conv,
                    chat_template=self.template,
                    tokenize=True,
                    return_dict=True,
                    return_tensors="pt",
                    add_generation_prompt=True,
                )
            except ValueError as e:  # e.g. an aspect ratio over 200
                raise bad_request(f"the processor refused the request: {e}", "bad_image") from None
        n_prompt = int(inputs["input_ids"].shape[1])
        if n_prompt > cfg.max_prompt_tokens:
            raise bad_request(
                f"the prompt is {n_prompt} tokens (images included), over this server's "
                f"max_prompt_tokens={cfg.max_prompt_tokens}; send fewer or smaller images",
                "prompt_too_long",
                "messages",
            )
        prepared = Prepared({k: v for k, v in inputs.items()}, [im.gsd for im in images])
        return Job(prepared, **common), images

    def _wants_zoom(self, req: ChatRequest) -> bool:
        if not req.tools or req.tool_choice == "none":
            return False
        names = [
            (t.get("function") or {}).get("name") if t.get("type") == "function" else None
            for t in req.tools
        ]
        if any(n != ZOOM_TOOL_NAME for n in names):
            raise bad_request(
                f"tools {names}: this server runs only the {ZOOM_TOOL_NAME!r} function tool",
                "unsupported_tool",
                "tools",
            )
        if not self.config.zoom:
            raise bad_request(
                f"this server does not run tools; start it with --zoom to execute "
                f"{ZOOM_TOOL_NAME} server-side on the native image",
                "tools_disabled",
                "tools",
            )
        if req.tool_choice not in (None, "auto"):
            raise bad_request("tool_choice: give 'auto' or 'none'", "unsupported", "tool_choice")
        if req.n != 1:
            raise bad_request("the zoom tool answers with n=1", "unsupported", "n")
        return True

    def _conversation(
        self, req: ChatRequest, images: list[LoadedImage], *, keep_raw: bool
    ) -> tuple[list[dict[str, Any]], list[LoadedImage]]:
        cfg = self.config
        conv: list[dict[str, Any]] = []
        total = 0
        for i, msg in enumerate(req.messages):
            role = "system" if msg.role == "developer" else msg.role
            if role == "tool":
                raise bad_request(
                    "tool messages are not accepted: the zoom tool runs server-side (--zoom)",
                    "unsupported",
                    f"messages.{i}.role",
                )
            content = msg.content if msg.content is not None else ""
            if isinstance(content, str):
                self._check_text(content, f"messages.{i}.content")
                conv.append({"role": role, "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for j, part in enumerate(content):
                where = f"messages.{i}.content.{j}"
                if not isinstance(part, ImagePart):
                    self._check_text(part.text, where)
                    parts.append({"type": "text", "text": part.text})
                    continue
                if role != "user":
                    raise bad_request(f"{where}: images go in user messages", "bad_request", where)
                if len(images) >= cfg.max_images:
                    raise bad_request(
                        f"more than max_images={cfg.max_images} images", "too_many_images", where
                    )
                try:
                    image = self.images.load(
                        part, f"image {len(images)} ({where})", keep_raw=keep_raw
                    )
                except APIError as e:
                    self.counts.failed(e.code or "bad_image")
                    raise
                total += image.pixels
                if total > cfg.max_request_pixels:
                    self.counts.failed("too_many_pixels")
                    raise bad_request(
                        f"the images hold {total:,} px in all, over this server's "
                        f"max_request_pixels={cfg.max_request_pixels:,}",
                        "too_many_pixels",
                        where,
                    )
                images.append(image)
                parts.append({"type": "image", "image": image.image})
                if self.model.gsd_as_text and image.gsd is not None:
                    parts.append({"type": "text", "text": gsd_sentence(image.gsd.point_m) + " "})
            conv.append({"role": role, "content": parts})
        return conv, images

    def _check_text(self, text: str, where: str) -> None:
        for token in self.control:
            if token in text:
                raise bad_request(
                    f"{where}: the text contains the control token {token!r}; remove it",
                    "control_token",
                    where,
                )

    def _zoom_task(self, req: ChatRequest, images: list[LoadedImage]) -> ZoomTask:
        users = [m for m in req.messages if m.role == "user"]
        others = [m for m in req.messages if m.role not in ("user", "system", "developer")]
        if len(users) != 1 or others or len(images) != 1:
            raise bad_request(
                "the zoom tool takes one user message with one image and its question",
                "zoom_request",
                "messages",
            )
        content = users[0].content
        question = (
            content
            if isinstance(content, str)
            else " ".join(p.text for p in content or [] if not isinstance(p, ImagePart))
        )
        if not question.strip():
            raise bad_request("the zoom request has no question text", "zoom_request", "messages")
        image = images[0]
        k = (
            self.config.max_zooms
            if req.max_zooms is None
            else min(req.max_zooms, self.config.max_zooms)
        )
        if image.path is not None:
            return ZoomTask(image.path, image.gsd, question.strip(), k)
        work = tempfile.TemporaryDirectory(prefix="earthvlm-zoom-")
        path = Path(work.name) / f"image{SUFFIX.get(image.format, '.bin')}"
        path.write_bytes(image.raw or b"")
        return ZoomTask(path, image.gsd, question.strip(), k, workdir=work)


def deadline_in(seconds: float) -> float:
    """A monotonic deadline ``seconds`` from now."""
    return time.monotonic() + seconds


__all__ = ["Preparer", "deadline_in"]
