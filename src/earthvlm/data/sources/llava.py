"""LLaVA-style conversation JSON (LLaVA, VHM) -> conversation records.

The instruction-tuning layout most remote-sensing VLMs release (a JSON list, or JSONL)::

    [{"id": "000123", "image": "P0003_0004.png",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is in the image?"},
                        {"from": "gpt", "value": "Two planes on an apron."}]}, ...]

``image`` is one file name or a list of them (multi-image rows), relative to
``image_dir``; rows without ``image`` are text-only. Each ``<image>`` token marks where
an image goes, in order; a row without tokens shows its images at the start of the
first user turn (LLaVA's convention). Roles ``human``/``gpt`` become ``user``/
``assistant``. Each row becomes one record (task ``conversation``); a repeated ``id``
gets the row index appended, so that every record id is unique.

VHM's files add ``image_path``, the image's folder (read by :class:`VHMConversations`).
GSD: none per sample; the dataset-level options apply, else unknown. GeoChat's tags and
boxes: :mod:`earthvlm.data.sources.geochat`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from earthvlm.data.record import ContentPart, ImagePart, ImageRef, Message, Record, TextPart
from earthvlm.data.sources._base import Row, RowError, SourceError, SourceReader

#: Speaker names -> record roles.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system"}  # fmt: skip
IMAGE_TOKEN = "<image>"


@dataclass
class Conversation:
    """What a turn converter sees and fills: the images, the boxes found so far, and
    free state a subclass keeps across the turns of one row."""

    images: list[ImageRef]
    task: str
    boxes: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class LLaVAConversations(SourceReader):
    """LLaVA-style conversations as records.

    Attributes:
        annotations: The JSON list (or ``.jsonl`` file) of rows, relative to the root.
        image_dir: The folder image names are relative to, relative to the root.
    """

    name: ClassVar[str] = "llava"
    task: ClassVar[str] = "conversation"
    files: ClassVar[tuple[str, ...]] = ("conversations.json", "images/<image>")
    #: A row field naming the image's folder (VHM's ``image_path``), or ``None``.
    folder_field: ClassVar[str | None] = None

    annotations: str = "conversations.json"
    image_dir: str = "images"

    def _rows(self, root: Path) -> Iterator[Row]:
        self._ids: dict[str, int] = {}
        rel = self.annotations
        if rel.lower().endswith(".jsonl"):
            yield from self._jsonl_rows(rel, lambda lineno, obj: self._record(lineno, obj))
            return
        data = self._load_json(rel)
        if not isinstance(data, list):
            raise SourceError(
                f"{rel}: expected a JSON list of conversations, got {type(data).__name__}"
            )
        for i, obj in enumerate(data):
            yield Row(rel, i, obj, lambda i=i, obj=obj: self._checked(i, obj))

    def _checked(self, i: int, obj: Any) -> Record:
        if not isinstance(obj, dict):
            raise RowError(
                "not_an_object", f"a row must be a JSON object, got {type(obj).__name__}",
                "write each conversation as a JSON object",
            )  # fmt: skip
        return self._record(i, obj)

    def _record(self, row: int, obj: dict[str, Any]) -> Record:
        turns = obj.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise RowError(
                "no_conversations",
                "the row has no 'conversations' list",
                "give the row a non-empty conversations list",
            )
        conv = Conversation(images=self._images(obj), task=self.task)
        tokens = 0
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise RowError(
                    "bad_turn", f"turn {k} needs 'from' and a string 'value'",
                    f"correct turn {k}",
                )  # fmt: skip
            tokens += turn["value"].count(IMAGE_TOKEN)
        if tokens not in (0, len(conv.images)):
            raise RowError(
                "image_token_mismatch",
                f"{tokens} {IMAGE_TOKEN} token(s) for {len(conv.images)} image(s)",
                f"write one {IMAGE_TOKEN} per image (or none: images then open the first turn)",
            )
        messages = [self._message(k, turn, conv) for k, turn in enumerate(turns)]
        if tokens == 0 and conv.images:
            first = next((i for i, m in enumerate(messages) if m.role == "user"), None)
            if first is None:
                raise RowError("no_user_turn", "no human turn", "add the question turn")
            parts: list[ContentPart] = [ImagePart(index=i) for i in range(len(conv.images))]
            old = messages[first].content
            parts += [TextPart(text=old)] if isinstance(old, str) else list(old)
            messages[first] = Message(role="user", content=parts)
        return Record(
            id=self._record_id(obj.get("id"), row),
            task=conv.task,
            source=self.source_name,
            split=self.split,
            images=conv.images,
            messages=messages,
            boxes=conv.boxes,
            meta={"row": row, "source_id": obj.get("id"), **conv.meta},
        )

    def _record_id(self, source_id: Any, row: int) -> str:
        text = str(source_id).strip() if isinstance(source_id, str | int) else ""
        text = re.sub(r"\s+", "_", text)
        if not text:
            return f"{self.source_name}-row{row}"
        n = self._ids.get(text, 0)
        self._ids[text] = n + 1
        return f"{self.source_name}-{text}" if n == 0 else f"{self.source_name}-{text}-row{row}"

    def _images(self, obj: dict[str, Any]) -> list[ImageRef]:
        names = obj.get("image")
        if names is None:
            return []
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise RowError(
                "bad_image_field", f"image {names!r}", "give a file name or a list of them"
            )
        folder = obj.get(self.folder_field) if self.folder_field else None
        if folder is not None and not isinstance(folder, str):
            raise RowError(
                "bad_image_field",
                f"{self.folder_field} {folder!r} is not a folder name",
                f"give {self.folder_field} as a relative folder",
            )
        base = PurePosixPath(self.image_dir or ".") / (folder or ".")
        return [self._image(str(base / n)) for n in names]

    def _message(self, k: int, turn: dict[str, Any], conv: Conversation) -> Message:
        speaker = turn.get("from", turn.get("role"))
        role = ROLES.get(str(speaker).lower()) if isinstance(speaker, str) else None
        if role is None:
            raise RowError(
                "unknown_role",
                f"turn {k} is from {speaker!r}",
                f"use one of {', '.join(sorted(ROLES))}",
            )
        value: str = turn["value"]
        pieces = value.split(IMAGE_TOKEN)
        if len(pieces) > 1 and role != "user":
            raise RowError(
                "image_in_answer",
                f"turn {k} ({speaker}) holds {IMAGE_TOKEN}",
                "move the image token to a human turn",
            )
        content: list[ContentPart] = []
        shown = sum(len(p.image_indexes()) for p in conv.state.get("messages", []))
        self._start_turn(role, k, conv)
        for j, piece in enumerate(pieces):
            if j > 0:
                content.append(ImagePart(index=shown + j - 1))
            text = self._convert_text(piece.strip(), role, k, conv).strip() if piece.strip() else ""
            if text:
                content.append(TextPart(text=text))
        if not content:
            raise RowError("empty_turn", f"turn {k} ({speaker}) is empty", f"write turn {k}")
        if len(content) == 1 and isinstance(content[0], TextPart):
            message = Message(role=role, content=content[0].text)
        else:
            message = Message(role=role, content=content)
        conv.state.setdefault("messages", []).append(message)
        return message

    def _start_turn(self, role: str, turn: int, conv: Conversation) -> None:
        """A hook called once per turn, before its text pieces are converted."""

    def _convert_text(self, text: str, role: str, turn: int, conv: Conversation) -> str:
        """A hook for formats with markup in the text (GeoChat), called for each non-empty
        text piece of a turn (the text between ``<image>`` tokens); here the text as is."""
        return text


@dataclass(kw_only=True)
class VHMConversations(LLaVAConversations):
    """VHM (Pang et al. 2025) instruction and evaluation files: LLaVA rows whose
    ``image_path`` names the image's folder."""

    name: ClassVar[str] = "vhm"
    files: ClassVar[tuple[str, ...]] = ("<task>.json", "<image_path>/<image>")
    folder_field: ClassVar[str | None] = "image_path"

    annotations: str = "list_sft.json"
    image_dir: str = ""
