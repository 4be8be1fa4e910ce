"""The sample record: one pydantic model for every task and every source.

Every public dataset is converted into :class:`Record` rows. A record holds its images
(each with its modality, bands, size and its own GSD), an OpenAI-style message list
whose image parts point at those images by index, and optional boxes and masks whose
field names carry their format and frame (``xyxy_px``, ``quad_px``, ``obb_px``: pixels
of the referenced source image). Validation errors carry a short machine-readable type
(``box_out_of_image``, ``image_part_mismatch``, ...) that the JSONL reader uses as the
quarantine reason. A record that could not be written back as JSON (a lone surrogate,
a ``meta`` nested past the serialiser's depth) is refused when it is made.

Example row::

    {"id": "dota-P0001-0", "task": "vqa", "source": "dota", "split": "train",
     "images": [{"path": "images/P0001.png", "width": 1024, "height": 768,
                 "gsd": {"kind": "exact", "m": 0.15, "source": "metadata"}}],
     "messages": [
        {"role": "user", "content": [{"type": "image", "index": 0},
                                     {"type": "text", "text": "How many planes?"}]},
        {"role": "assistant", "content": "3"}]}
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticSerializationError

from earthvlm.data.paths import check_relative_path
from earthvlm.errors import PathEscapeError
from earthvlm.geo.boxes import obb_to_quad, quad_area
from earthvlm.io import UntrustedJSONError, check_plain_json
from earthvlm.scale.gsd import GSD

Modality = Literal["optical", "sar", "multispectral"]
Role = Literal["system", "user", "assistant", "tool"]

#: Tolerance in pixels for boxes touching the image border (annotation tools round).
BOX_BORDER_TOL_PX = 1.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ImageRef(_Strict):
    """One image of a record.

    Attributes:
        path: Relative to the dataset root (POSIX separators), or absolute inside it.
        modality: ``optical``, ``sar`` or ``multispectral``.
        bands: Band names in file order (e.g. ``["B04", "B03", "B02"]``, ``["VV", "VH"]``).
        width: Width in pixels of the file, when known.
        height: Height in pixels of the file, when known.
        gsd: The GSD of this image (of what the model sees, for derived views).
    """

    path: str
    modality: Modality = "optical"
    bands: list[str] | None = None
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    gsd: GSD = Field(default_factory=GSD.unknown)

    @field_validator("path")
    @classmethod
    def _safe_path(cls, v: str) -> str:
        try:
            if not v.startswith("/") or v.startswith("/vsi") or "\x00" in v:
                check_relative_path(v)
        except PathEscapeError as e:
            raise PydanticCustomError("unsafe_path", "{msg}", {"msg": str(e)}) from None
        return v

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or any(not b.strip() for b in v)):
            raise PydanticCustomError("bad_bands", "bands must be a non-empty list of names")
        return v


class TextPart(_Strict):
    """A text part of a message."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_Strict):
    """A placeholder for the record's image number ``index``."""

    type: Literal["image"] = "image"
    index: int = Field(ge=0)


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(_Strict):
    """One chat turn, OpenAI-style: plain text or a list of text and image parts."""

    role: Role
    content: str | list[ContentPart]

    def text(self) -> str:
        """The message's text with image parts left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def image_indexes(self) -> list[int]:
        """Indexes of the images this message shows, in order."""
        if isinstance(self.content, str):
            return []
        return [p.index for p in self.content if isinstance(p, ImagePart)]


def _finite(values: tuple[float, ...], name: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise PydanticCustomError(
            "box_not_finite", "{name} has NaN or inf: {v}", {"name": name, "v": values}
        )


class Box(_Strict):
    """An object's box in pixels of the source image ``image``; exactly one geometry field.

    Attributes:
        label: The class name.
        image: Index of the record image the box belongs to.
        xyxy_px: Horizontal box ``[x1, y1, x2, y2]``.
        quad_px: Quadrilateral ``[x1, y1, ..., x4, y4]``.
        obb_px: Oriented box ``[cx, cy, w, h, angle_deg]`` (angle counter-clockwise from x).
        score: A detector's confidence, for predictions.
    """

    label: str = Field(min_length=1)
    image: int = Field(default=0, ge=0)
    xyxy_px: tuple[float, float, float, float] | None = None
    quad_px: tuple[float, float, float, float, float, float, float, float] | None = None
    obb_px: tuple[float, float, float, float, float] | None = None
    score: float | None = None

    @model_validator(mode="after")
    def _geometry(self) -> Box:
        given = [n for n in ("xyxy_px", "quad_px", "obb_px") if getattr(self, n) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "box_geometry",
                "a box needs exactly one of xyxy_px, quad_px, obb_px; got {given}",
                {"given": given or "none"},
            )
        name = given[0]
        values = getattr(self, name)
        _finite(values, name)
        if name == "xyxy_px":
            x1, y1, x2, y2 = values
            if not (x2 > x1 and y2 > y1):
                raise PydanticCustomError(
                    "box_degenerate", "xyxy_px {v} needs x2 > x1 and y2 > y1", {"v": values}
                )
        elif name == "quad_px":
            if quad_area(values) <= 0:
                raise PydanticCustomError(
                    "box_degenerate", "quad_px {v} has zero area", {"v": values}
                )
        elif not (values[2] > 0 and values[3] > 0):
            raise PydanticCustomError(
                "box_degenerate", "obb_px {v} needs w > 0 and h > 0", {"v": values}
            )
        return self

    def corners_px(self) -> list[tuple[float, float]]:
        """The box's corner points in pixels (2 for ``xyxy``, 4 otherwise)."""
        if self.xyxy_px is not None:
            x1, y1, x2, y2 = self.xyxy_px
            return [(x1, y1), (x2, y2)]
        if self.quad_px is not None:
            q = self.quad_px
            return [(q[i], q[i + 1]) for i in range(0, 8, 2)]
        q = obb_to_quad(*self.obb_px)  # type: ignore[misc]
        return [(float(x), float(y)) for x, y in q]


class Mask(_Strict):
    """A mask for image ``image``: a PNG path (relative like image paths) or COCO RLE.

    Attributes:
        label: The class name.
        image: Index of the record image the mask belongs to.
        path: A PNG: binary, or an instance-id map when ``instance`` is set.
        rle: COCO run-length encoding (``size`` [h, w] and ``counts``).
        instance: The pixel value of this object in an instance-id PNG.
    """

    label: str | None = None
    image: int = Field(default=0, ge=0)
    path: str | None = None
    rle: dict[str, Any] | None = None
    instance: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> Mask:
        if (self.path is None) == (self.rle is None):
            raise PydanticCustomError("mask_source", "a mask needs exactly one of path, rle")
        if self.path is not None:
            ImageRef._safe_path(self.path)
        if self.rle is not None and not {"size", "counts"} <= set(self.rle):
            raise PydanticCustomError("mask_rle", "rle needs 'size' [h, w] and 'counts'")
        return self


class Record(_Strict):
    """One training or evaluation sample.

    Attributes:
        id: Unique within a dataset.
        task: What the sample trains or tests (``vqa``, ``caption``, ``grounding``,
            ``detection``, ``classification``, ``mcq``, ``segmentation``, ...).
        source: The dataset it came from.
        split: ``train``, ``val`` or ``test`` (free text for unusual splits).
        images: The images, referenced by index from message parts, boxes and masks.
        messages: The conversation; every image appears in exactly one image part.
        boxes: Object boxes (targets or annotations).
        masks: Object masks.
        meta: Anything else the source carries (kept, not interpreted).
    """

    id: str = Field(min_length=1)
    task: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    source: str = Field(min_length=1)
    split: str = "train"
    images: list[ImageRef] = Field(default_factory=list)
    messages: list[Message] = Field(min_length=1)
    boxes: list[Box] = Field(default_factory=list)
    masks: list[Mask] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> Record:
        shown = [i for m in self.messages for i in m.image_indexes()]
        n = len(self.images)
        bad = [i for i in shown if i >= n]
        if bad or sorted(shown) != list(range(n)):
            raise PydanticCustomError(
                "image_part_mismatch",
                "messages show images {shown} but the record has {n} image(s); each image "
                "must appear in exactly one image part",
                {"shown": shown, "n": n},
            )
        for k, box in enumerate(self.boxes):
            if box.image >= n:
                raise PydanticCustomError(
                    "box_image_index",
                    "box {k} refers to image {i} of {n}",
                    {"k": k, "i": box.image, "n": n},
                )
            img = self.images[box.image]
            if img.width is None or img.height is None:
                continue
            tol = BOX_BORDER_TOL_PX
            for x, y in box.corners_px():
                if not (-tol <= x <= img.width + tol and -tol <= y <= img.height + tol):
                    raise PydanticCustomError(
                        "box_out_of_image",
                        "box {k} ({label}) has a corner ({x}, {y}) outside the {w} x {h} image",
                        {
                            "k": k,
                            "label": box.label,
                            "x": f"{x:.1f}",
                            "y": f"{y:.1f}",
                            "w": img.width,
                            "h": img.height,
                        },
                    )
        for k, mask in enumerate(self.masks):
            if mask.image >= n:
                raise PydanticCustomError(
                    "mask_image_index",
                    "mask {k} refers to image {i} of {n}",
                    {"k": k, "i": mask.image, "n": n},
                )
        if not any(m.role == "user" for m in self.messages):
            raise PydanticCustomError("no_user_turn", "messages need at least one user turn")
        return self

    @model_validator(mode="after")
    def _writable(self) -> Record:
        # A record the writer cannot write back is refused here, where the reader can
        # quarantine it, not later by the writer: a lone surrogate (text or meta from a
        # "\ud800" escape) or a meta nested past the serialiser's depth. The free-form
        # dicts are walked too: the serialiser silently mangles a surrogate in a key.
        try:
            for free in (self.meta, *(m.rle for m in self.masks if m.rle)):
                check_plain_json(free, max_depth=None)
        except UntrustedJSONError as e:
            raise PydanticCustomError(e.reason, "{detail}", {"detail": e.detail}) from None
        try:
            self.model_dump_json()
        except PydanticSerializationError as e:
            msg = str(e)
            if "surrogate" in msg or "UnicodeEncodeError" in msg:
                reason, what = "lone_surrogate", "a lone surrogate (half of a UTF-16 pair)"
            elif "depth" in msg:
                reason, what = "too_deep", "a value nested too deeply"
            else:
                reason, what = "not_serializable", "a value JSON cannot hold"
            raise PydanticCustomError(
                reason,
                "the record holds {what}; it could not be written back ({msg})",
                {"what": what, "msg": msg[:200]},
            ) from None
        return self


def primary_error(err: ValidationError) -> dict[str, Any]:
    """The most specific error of a record's validation: the one with the deepest location.

    ``content: str | list[part]`` reports a bad part twice: as "not a string" at the
    message and as the real problem inside the part; the deeper one is what to fix.
    """
    return max(err.errors(), key=lambda e: len(e["loc"]))
