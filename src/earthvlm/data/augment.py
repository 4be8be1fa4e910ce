"""Online augmentation of records: prompts, synonyms, box text style, random resize.

RSCoVLM sec. III-B3: "multiple agent prompts were designed for certain tasks, and one
was randomly selected during training"; detection and grounding targets "randomly
switched between standard and JSON outputs"; "a synonym replacement module was
implemented to randomly substitute words with their synonyms"; and (sec. III-C3) images
"randomly rescaled to different resolutions" with their boxes "synchronously scaled".
Every operation is on or off in :class:`AugmentConfig` and draws from its own child of
one seeded NumPy generator, so switching one off does not change the others' draws.

Where this departs from the reference release (``notes/hf-stack.md``):

* synonyms are applied, and applied alike to the question, the answer target and the
  record's box labels (the release ships the tables but never wires them in);
* random resize scales side lengths by the square root of the drawn *area* ratio (the
  release multiplies sides by the area ratio), and boxes, image sizes and the GSD move
  with the image (GSD scales inversely with the side scale, :meth:`GSD.scaled`);
* the resized image is what the model sees. The record stays a record (no pixels are
  written): each resized image gets a *resize instruction* in ``meta["resize"]``
  (``{"image": i, "source_wh": [w, h], "wh": [w', h']}``) and its ``ImageRef`` the new
  size; whatever decodes the file must apply it with :func:`apply_resize`, which checks
  that the file is the size the instruction was made for. The collator does
  (:class:`~earthvlm.data.collate.Collator`; a file of another size is refused as
  ``stale_resize``). Random resize is off by default, like every augmentation.

What is left alone, and counted as skipped with a reason (:attr:`Augmenter.counts`):
multi-turn conversations (templates), prompts that match none of the task's templates
(``prompt_unrecognised``), detection or grounding targets that are not exactly the
serialisation of the record's boxes (``target_not_boxes``: the style cannot be switched
nor the image resized without breaking them), other records whose text holds box-like
coordinates (``coordinates_in_text``), and images of unknown size or above
``resize_max_pixels``. Coordinates a reader keeps in ``meta`` (LRS-VQA's
``rbox_quad_px``) are not moved; ``meta["resize"]`` says how to map them. Apply
augmentation before :func:`earthvlm.data.gsd_text.with_gsd_text`, which states the
(resized) GSD in the prompt.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from earthvlm.data.detection_text import NONE_TARGET, serialise_detections
from earthvlm.data.record import Box, Message, Record, TextPart
from earthvlm.data.sources._prompts import (
    CLASSIFICATION_TEMPLATE,
    DETECTION_ASK,
    DETECTION_TEMPLATE,
    GROUNDING_ASK,
    GROUNDING_TEMPLATE,
)
from earthvlm.errors import RecordError
from earthvlm.geo.boxes import obb_to_quad, scale_xy

_NONE = f'"{NONE_TARGET}"'

# -- tables ------------------------------------------------------------------------------

#: Instruction templates per task. Slots: ``{question}`` (VQA, counting: the original
#: question, kept whole with any answer-format sentence it carries), ``{classes}``
#: (classification: the class list; detection: an optional `` Classes: a, b.``),
#: ``{expression}`` (grounding), ``{format}`` (the format sentence of the target's
#: format and style). No template changes what the answer looks like. Template 0 is the
#: wording the dataset readers write (:mod:`earthvlm.data.sources._prompts`).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "classification": (
        CLASSIFICATION_TEMPLATE,
        "Which of these scene classes does this image show: {classes}? Answer with the class "
        "name only.",
        "What kind of scene is shown in this aerial image? Choose one of: {classes}.",
        "Assign this remote-sensing image to one of these categories: {classes}. Reply with "
        "the category name.",
    ),
    "vqa": (
        "{question}",
        "Answer the question about this image. {question}",
        "Question: {question}",
        "Look at the image carefully. {question}",
    ),
    "counting": (
        "{question}",
        "Count carefully. {question}",
        "Look closely at the whole image. {question}",
    ),
    "caption": (
        "Describe this remote-sensing image.",
        "Describe what you see in this aerial image.",
        "Write a description of this image.",
        "What does this image show? Describe it.",
    ),
    "grounding": (
        GROUNDING_TEMPLATE,
        "Find {expression} in the image. {format}",
        "Where is {expression} in this image? {format}",
        "Give the location of {expression}. {format}",
    ),
    "detection": (
        DETECTION_TEMPLATE,
        "Find every object in this aerial image. {format}{classes} If the image holds no "
        f"object, answer {_NONE}",
        "List the objects in this remote-sensing image with their boxes. {format}{classes} "
        f"If there is no object, answer {_NONE}",
        "Locate and classify every object you can see. {format}{classes} Answer "
        f"{_NONE} if there is no object.",
    ),
}

#: DOTA (v1.0-v2.0) class -> other names for the same kind of object, at the same level
#: of abstraction (``small-vehicle`` is not ``sedan``). The paper and formats.md give no
#: table, and the reference release's (written by a language model) names other kinds
#: of object (``bridge`` -> ``overpass``); these are ours, small and conservative, and
#: no name belongs to two classes (a test checks it).
DOTA_SYNONYMS: dict[str, tuple[str, ...]] = {
    "plane": ("airplane", "aircraft", "aeroplane"),
    "ship": ("vessel", "boat"),
    "storage-tank": ("storage tank", "tank"),
    "baseball-diamond": ("baseball diamond", "baseball field"),
    "tennis-court": ("tennis court",),
    "basketball-court": ("basketball court",),
    "ground-track-field": ("ground track field", "athletics track", "running track"),
    "harbor": ("harbour", "port"),
    "bridge": (),
    "large-vehicle": ("large vehicle", "heavy vehicle"),
    "small-vehicle": ("small vehicle", "car"),
    "helicopter": ("rotorcraft",),
    "roundabout": ("traffic circle",),
    "soccer-ball-field": ("soccer ball field", "soccer field", "football field"),
    "swimming-pool": ("swimming pool", "pool"),
    "container-crane": ("container crane", "gantry crane"),
    "airport": ("airfield",),
    "helipad": ("helicopter pad",),
}

#: FAIR1M 1.0 class -> other names (same rules as :data:`DOTA_SYNONYMS`).
FAIR1M_SYNONYMS: dict[str, tuple[str, ...]] = {
    **{f"Boeing{n}": (f"Boeing {n}", f"B{n}") for n in (737, 747, 777, 787)},
    "C919": ("COMAC C919",),
    "ARJ21": ("COMAC ARJ21",),
    **{a: (f"Airbus {a}",) for a in ("A220", "A321", "A330", "A350")},
    "other-airplane": ("other airplane", "other aircraft"),
    "Passenger Ship": ("passenger ship", "passenger vessel"),
    "Motorboat": ("motorboat", "motor boat", "speedboat"),
    "Fishing Boat": ("fishing boat", "fishing vessel"),
    "Tugboat": ("tugboat", "tug"),
    "Engineering Ship": ("engineering ship", "engineering vessel"),
    "Liquid Cargo Ship": ("liquid cargo ship", "tanker"),
    "Dry Cargo Ship": ("dry cargo ship", "freighter"),
    "Warship": ("warship", "naval vessel"),
    "other-ship": ("other ship",),
    "Small Car": ("small car", "car"),
    "Bus": ("bus", "coach"),
    "Cargo Truck": ("cargo truck", "freight truck"),
    "Dump Truck": ("dump truck", "tipper truck"),
    "Van": ("van",),
    "Trailer": ("trailer",),
    "Tractor": ("tractor", "farm tractor"),
    "Excavator": ("excavator", "digger"),
    "Truck Tractor": ("truck tractor", "tractor unit"),
    "other-vehicle": ("other vehicle",),
    "Basketball Court": ("basketball court",),
    "Tennis Court": ("tennis court",),
    "Football Field": ("football field", "soccer field"),
    "Baseball Field": ("baseball field", "baseball diamond"),
    "Intersection": ("intersection", "road junction"),
    "Roundabout": ("roundabout", "traffic circle"),
    "Bridge": ("bridge",),
}

#: Synonym tables by name (the values of :attr:`AugmentConfig.synonym_sources`).
SYNONYM_TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "dota": DOTA_SYNONYMS,
    "fair1m": FAIR1M_SYNONYMS,
}

#: Where resize instructions live in ``Record.meta``.
RESIZE_META_KEY = "resize"
#: Tasks whose records random resize may touch by default.
RESIZE_TASKS = ("classification", "vqa", "counting", "caption", "detection", "grounding")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how often."""

    templates: bool = True
    """Rewrite a recognised single-turn instruction with a random template of its task."""
    synonyms: bool = True
    """Replace class names from the source's synonym table, in question, answer and boxes."""
    synonym_prob: float = 0.5
    """Probability that a record (whose source has a table) gets synonyms."""
    synonym_sources: Mapping[str, str] = field(
        default_factory=lambda: {"dota": "dota", "fair1m": "fair1m"}
    )
    """Record ``source`` prefix -> synonym table (:data:`SYNONYM_TABLES`)."""
    switch_style: bool = True
    """Re-serialise detection and grounding targets as plain text or JSON at random."""
    json_prob: float = 0.5
    """Probability of the JSON style when ``switch_style`` is on."""
    resize: bool = False
    """Random resize (the collator applies ``meta["resize"]``: see the module)."""
    resize_prob: float = 0.5
    """Probability that a record is resized when ``resize`` is on."""
    resize_area_ratio: tuple[float, float] = (0.25, 2.0)
    """Range of the area ratio (new / old), drawn log-uniformly; sides scale by its
    square root. The paper gives no range: this one is ours."""
    resize_max_pixels: int | None = None
    """Cap on a resized image's area; images already larger are not resized (UHR
    images go to the zoom path instead)."""
    resize_tasks: tuple[str, ...] = RESIZE_TASKS
    """Tasks whose records may be resized (leave out tasks whose answer depends on the
    image size or GSD, such as resolution estimation)."""

    def __post_init__(self) -> None:
        for name in ("synonym_prob", "json_prob", "resize_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ValueError(f"augment.{name}={v!r}: must be a probability in [0, 1]")
        for name in ("templates", "synonyms", "switch_style", "resize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"augment.{name}={getattr(self, name)!r}: true or false")
        bad = {k: v for k, v in self.synonym_sources.items() if v not in SYNONYM_TABLES}
        if bad:
            raise ValueError(
                f"augment.synonym_sources={dict(self.synonym_sources)}: unknown table(s) "
                f"{bad}; choose from {sorted(SYNONYM_TABLES)}"
            )
        lo, hi = self.resize_area_ratio
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(
                f"augment.resize_area_ratio={self.resize_area_ratio}: need 0 < low <= high"
            )
        if self.resize_max_pixels is not None and self.resize_max_pixels < 1:
            raise ValueError(f"augment.resize_max_pixels={self.resize_max_pixels}: >= 1 or null")


# -- prompts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    template: int
    slots: dict[str, str]
    fmt: str | None = None
    style: str | None = None


def _asks(task: str) -> dict[tuple[str, str], str]:
    return GROUNDING_ASK if task == "grounding" else DETECTION_ASK


def _slot_pattern(task: str, slot: str) -> str:
    if slot == "format":
        alts = sorted(_asks(task).values(), key=len, reverse=True)
        return "(?P<format>" + "|".join(re.escape(a) for a in alts) + ")"
    if slot == "classes" and task == "detection":
        return r"(?P<classes>(?: Classes: [^\n]+?\.)?)"
    if slot == "question":
        return r"(?P<question>\S.*)"
    return rf"(?P<{slot}>\S.*?)"


def _compile(task: str, template: str) -> re.Pattern[str]:
    parts = []
    for literal, slot, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if slot is not None:
            parts.append(_slot_pattern(task, slot))
    return re.compile("".join(parts), re.DOTALL)


# templates with more fixed text first, so that "{question}" alone is tried last
_PATTERNS: dict[str, list[tuple[int, re.Pattern[str]]]] = {
    task: sorted(
        ((i, _compile(task, t)) for i, t in enumerate(ts)),
        key=lambda it: -len(re.sub(r"\{\w+\}", "", TEMPLATES[task][it[0]])),
    )
    for task, ts in TEMPLATES.items()
}


def parse_prompt(task: str, text: str) -> tuple[int, dict[str, str]] | None:
    """Which template of ``task`` wrote ``text``, and its slot values; None if none did."""
    for i, pattern in _PATTERNS.get(task, []):
        m = pattern.fullmatch(text)
        if m:
            return i, m.groupdict()
    return None


def render_prompt(
    task: str, template: int, slots: Mapping[str, str], fmt: str = "", style: str = ""
) -> str:
    """Template ``template`` of ``task`` with its slots filled (``format`` from ``fmt``
    and ``style`` for detection and grounding)."""
    values = dict(slots)
    if task in ("detection", "grounding"):
        values["format"] = _asks(task)[(fmt, style)]
    return TEMPLATES[task][template].format(**values)


# -- synonyms -----------------------------------------------------------------------------


def pluralise(name: str) -> str:
    """The plural of a class name's last word (``bus`` -> ``buses``, ``B737`` -> ``B737s``)."""
    if re.search(r"(?:s|x|z|ch|sh)$", name, re.I):
        return name + "es"
    if re.search(r"[^aeiou]y$", name, re.I):
        return name[:-1] + "ies"
    return name + "s"


def _spellings(name: str) -> set[str]:
    """How a class name may be written in text: ``small-vehicle``, ``small vehicle``, ..."""
    base = {name, name.replace("-", " "), name.replace("_", " "), name.replace(" ", "-")}
    return {s.lower() for s in base}


class Synonyms:
    """A consistent renaming of classes, applied to any text: ``{canonical: chosen}``.

    Matches each canonical name in any of its spellings (``-``, ``_`` or space between
    words), singular or plural, as a whole word (a hyphen counts as part of a word, so
    ``ship`` is not found inside ``other-ship``), case-insensitively; longer names win,
    so map a class to itself to keep its name from being read as a shorter class
    (``Truck Tractor`` is not a ``Tractor``). A plural match gets the chosen name's
    plural; a capitalised match a capitalised name (when the chosen name is lower case).

    Attributes:
        mapping: The classes actually renamed (identities left out).
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = {c: n for c, n in mapping.items() if c != n}
        self._by_spelling: dict[str, tuple[str, str, bool]] = {}
        for canonical, chosen in mapping.items():
            for s in _spellings(canonical):
                self._by_spelling[s] = (canonical, chosen, False)
                self._by_spelling.setdefault(pluralise(s).lower(), (canonical, chosen, True))
        alts = sorted(self._by_spelling, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, alts)) + r")(?![\w-])", re.I)
            if alts
            else None
        )

    def _sub(self, m: re.Match[str]) -> str:
        canonical, chosen, plural = self._by_spelling[m.group(0).lower()]
        if canonical == chosen:
            return m.group(0)
        out = pluralise(chosen) if plural else chosen
        if m.group(0)[0].isupper() and out[0].islower():
            out = out[0].upper() + out[1:]
        return out

    def __call__(self, text: str) -> str:
        return self._pattern.sub(self._sub, text) if self._pattern is not None else text

    def find(self, text: str) -> set[str]:
        """The canonical names of the classes named in ``text``."""
        if self._pattern is None:
            return set()
        return {self._by_spelling[m.group(0).lower()][0] for m in self._pattern.finditer(text)}


def synonym_table(source: str, sources: Mapping[str, str]) -> dict[str, tuple[str, ...]] | None:
    """The synonym table of a record source: the longest matching prefix in ``sources``."""
    keys = [k for k in sources if source == k or source.startswith(k)]
    return SYNONYM_TABLES[sources[max(keys, key=len)]] if keys else None


@functools.lru_cache(maxsize=16)
def _identity(classes: frozenset[str]) -> Synonyms:
    return Synonyms({c: c for c in classes})


def choose_synonyms(
    table: Mapping[str, tuple[str, ...]], texts: Sequence[str], rng: np.random.Generator
) -> Synonyms:
    """Pick a name for every class of ``table`` named in ``texts``, uniformly among the
    class name itself and its synonyms (classes in sorted order); the renaming also
    keeps every other class of the table as it is (see :class:`Synonyms`)."""
    named = _identity(frozenset(table)).find("\n".join(texts))
    chosen = {c: c for c in table}
    for canonical in sorted(named):
        forms = (canonical, *table[canonical])
        chosen[canonical] = forms[int(rng.integers(len(forms)))]
    return Synonyms(chosen)


# -- random resize ------------------------------------------------------------------------


def _box_geometry(box: Box) -> tuple[float, ...]:
    if box.xyxy_px is not None:
        return box.xyxy_px
    if box.quad_px is not None:
        return box.quad_px
    return tuple(float(v) for v in obb_to_quad(*box.obb_px).reshape(-1))  # type: ignore[misc]


def resize_record(record: Record, scale: float, detail: str = "random resize") -> Record:
    """A copy of ``record`` whose images are ``scale`` times larger along each side.

    Each image's size becomes ``round(side * scale)`` (at least 1 px); its boxes scale
    by the exact side ratios (an ``obb_px`` box becomes the ``quad_px`` of its corners,
    which anisotropic rounding keeps exact); its GSD grows by
    ``sqrt(old area / new area)``; and ``meta["resize"]`` records the instruction for the
    image decoder (:func:`apply_resize`), keeping the file's original size across
    repeated resizes.

    Raises:
        ValueError: If ``scale`` is not positive or an image's size is unknown.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale={scale!r}: must be finite and > 0")
    previous = {e["image"]: e for e in record.meta.get(RESIZE_META_KEY, [])}
    images, ratios, instructions = [], [], []
    for i, im in enumerate(record.images):
        if im.width is None or im.height is None:
            raise ValueError(f"record {record.id}: image {i} has no width/height to resize")
        w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
        ratios.append((w / im.width, h / im.height))
        factor = math.sqrt((im.width * im.height) / (w * h))
        gsd = im.gsd.scaled(factor, f"{detail} {im.width}x{im.height} -> {w}x{h} px")
        images.append(im.model_copy(update={"width": w, "height": h, "gsd": gsd}))
        source = previous.get(i, {}).get("source_wh", [im.width, im.height])
        instructions.append({"image": i, "source_wh": list(source), "wh": [w, h]})
    boxes = []
    for b in record.boxes:
        sx, sy = ratios[b.image]
        geom = tuple(scale_xy(_box_geometry(b), sx, sy).tolist())
        kind = "xyxy_px" if b.xyxy_px is not None else "quad_px"
        boxes.append(
            b.model_copy(update={"xyxy_px": None, "quad_px": None, "obb_px": None, kind: geom})
        )
    meta = {**record.meta, RESIZE_META_KEY: instructions}
    out = record.model_copy(update={"images": images, "boxes": boxes, "meta": meta})
    return Record.model_validate(out.model_dump())


def resize_instruction(record: Record, index: int) -> dict[str, Any] | None:
    """The resize instruction of image ``index`` of ``record``, or None."""
    for entry in record.meta.get(RESIZE_META_KEY, []):
        if entry.get("image") == index:
            return entry
    return None


def apply_resize(image: Image.Image, record: Record, index: int) -> Image.Image:
    """The image the record's image ``index`` stands for: the decoded file resized as
    its instruction says (bicubic, antialiased), or the file itself when there is none.

    Raises:
        RecordError: If the decoded file is not the size the instruction was made for
            (the record is stale: re-read the file's size and augment again).
    """
    entry = resize_instruction(record, index)
    if entry is None:
        return image
    source, target = tuple(entry["source_wh"]), tuple(entry["wh"])
    if image.size != source:
        raise RecordError(
            f"record {record.id}: image {index} is {image.size[0]}x{image.size[1]} px but its "
            f"resize instruction was made for {source[0]}x{source[1]}; re-augment the record"
        )
    if source == target:
        return image
    return image.resize(target, Image.Resampling.BICUBIC)


# -- one record ---------------------------------------------------------------------------

_COORDS_IN_TEXT = re.compile(r"\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}|<\d+>\s*<\d+>")


@dataclass
class AugmentResult:
    """An augmented record and what happened to it.

    Attributes:
        record: The new record (``meta["augment"]`` repeats ``applied``).
        applied: Operation -> what it did (template index, synonym mapping, style, scale).
        skipped: Operation -> why it did not run (only for operations that were drawn).
    """

    record: Record
    applied: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _text_of(m: Message) -> str | None:
    if isinstance(m.content, str):
        return m.content
    texts = [p for p in m.content if isinstance(p, TextPart)]
    return texts[0].text if len(texts) == 1 else None


def _with_text(m: Message, text: str) -> Message:
    if isinstance(m.content, str):
        return Message(role=m.role, content=text)
    content = [TextPart(text=text) if isinstance(p, TextPart) else p for p in m.content]
    return Message(role=m.role, content=content)


def _map_texts(
    messages: list[Message], fn: Callable[[str], str], skip: int | None = None
) -> list[Message]:
    out = []
    for k, m in enumerate(messages):
        if m.role not in ("user", "assistant") or k == skip:
            out.append(m)
        elif isinstance(m.content, str):
            out.append(Message(role=m.role, content=fn(m.content)))
        else:
            parts = [TextPart(text=fn(p.text)) if isinstance(p, TextPart) else p for p in m.content]
            out.append(Message(role=m.role, content=parts))
    return out


def _target_style(
    record: Record, answer: str | None, slots: Mapping[str, str]
) -> tuple[str, str] | None:
    """``(format, style)`` whose serialisation of the record's boxes is exactly the
    answer: the prompt's format sentence first, then ``meta``, then any (so that the
    empty target, the same in every style, keeps the prompt's format)."""
    if answer is None or len(record.images) != 1:
        return None
    objects = [(b.label, _box_geometry(b)) for b in record.boxes]
    asks = {v: k for k, v in _asks(record.task).items()}
    candidates = [asks[slots["format"]]] if slots.get("format") in asks else []
    candidates.append((record.meta.get("format"), record.meta.get("style")))
    candidates += [(f, s) for f in ("quad", "hbox") for s in ("plain", "json")]
    for fmt, style in candidates:
        if fmt in ("quad", "hbox") and style in ("plain", "json"):
            try:
                if serialise_detections(objects, fmt=fmt, style=style) == answer:
                    return fmt, style
            except ValueError:
                return None
    return None


def augment(record: Record, config: AugmentConfig, rng: np.random.Generator) -> AugmentResult:
    """Augment one record (see the module docstring); ``record`` is not mutated."""
    g_template, g_synonyms, g_style, g_resize = rng.spawn(4)
    applied: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    task = record.task
    messages = list(record.messages)
    turns = [k for k, m in enumerate(messages) if m.role in ("user", "assistant")]
    single = [messages[k].role for k in turns] == ["user", "assistant"]
    q_at, a_at = (turns[0], turns[1]) if single else (None, None)
    prompt = _text_of(messages[q_at]) if q_at is not None else None
    answer = _text_of(messages[a_at]) if a_at is not None else None
    boxed = task in ("detection", "grounding")
    parsed = parse_prompt(task, prompt) if prompt else None
    template, slots = parsed if parsed else (None, {})
    fmt_style = _target_style(record, answer, slots) if boxed else None
    fmt, style = fmt_style or ("", "")
    unparsed = "multi_turn" if not single else "prompt_unrecognised"
    if boxed and parsed is not None and fmt_style is None:
        parsed, unparsed = None, "target_not_boxes"  # our wording over a foreign target

    # templates: choose the wording (rendered after the style is known)
    if config.templates and task in TEMPLATES:
        if parsed is None:
            skipped["template"] = unparsed
        else:
            template = int(g_template.integers(len(TEMPLATES[task])))
            applied["template"] = template

    # style: plain text or JSON
    if config.switch_style and boxed:
        new_style = "json" if g_style.random() < config.json_prob else "plain"
        if fmt_style is None:
            skipped["style"] = "target_not_boxes"
        elif parsed is None and new_style != style:
            skipped["style"] = "prompt_unrecognised"
        else:
            style = new_style
            applied["style"] = style

    # synonyms: one name per class, for every text and box label
    table = synonym_table(record.source, config.synonym_sources)
    rename: Synonyms | None = None
    if config.synonyms and table is not None and g_synonyms.random() < config.synonym_prob:
        texts = [t for m in messages if (t := m.text())] + [b.label for b in record.boxes]
        rename = choose_synonyms(table, texts, g_synonyms)
        if rename.mapping:
            applied["synonyms"] = rename.mapping
        else:
            skipped["synonyms"] = "nothing_renamed"
            rename = None

    # random resize: image sizes, boxes, GSD, and the instruction for the decoder
    new = record
    if config.resize and g_resize.random() < config.resize_prob:
        reason = _resize_problem(record, config, boxed, fmt_style)
        if reason:
            skipped["resize"] = reason
        else:
            lo, hi = config.resize_area_ratio
            ratio = math.exp(g_resize.uniform(math.log(lo), math.log(hi)))
            if config.resize_max_pixels is not None:
                largest = max(im.width * im.height for im in record.images)  # type: ignore[operator]
                ratio = min(ratio, config.resize_max_pixels / largest)
            scale = math.sqrt(ratio)  # sides scale by the root of the area ratio
            new = resize_record(record, scale)
            applied["resize"] = {"area_ratio": ratio, "side_scale": scale}

    boxes = list(new.boxes)
    if rename is not None:
        boxes = [b.model_copy(update={"label": rename(b.label)}) for b in boxes]
        messages = _map_texts(messages, rename, skip=a_at if fmt_style else None)
    if parsed is not None and template is not None:
        text = render_prompt(task, template, slots, fmt, style)
        messages[q_at] = _with_text(messages[q_at], rename(text) if rename else text)  # type: ignore[index]
    if fmt_style is not None and a_at is not None:
        objects = [(b.label, _box_geometry(b)) for b in boxes]
        messages[a_at] = _with_text(
            messages[a_at], serialise_detections(objects, fmt=fmt, style=style)
        )
    if not applied:
        return AugmentResult(record, applied, skipped)
    meta = {**new.meta, "augment": applied}
    if fmt_style is not None and "style" in meta:
        meta["style"] = style
    out = new.model_copy(update={"messages": messages, "boxes": boxes, "meta": meta})
    return AugmentResult(Record.model_validate(out.model_dump()), applied, skipped)


def _resize_problem(
    record: Record, config: AugmentConfig, boxed: bool, fmt_style: tuple[str, str] | None
) -> str | None:
    if record.task not in config.resize_tasks:
        return "task_not_resized"
    if not record.images:
        return "no_image"
    if any(im.width is None or im.height is None for im in record.images):
        return "unknown_size"
    if config.resize_max_pixels is not None and any(
        im.width * im.height > config.resize_max_pixels  # type: ignore[operator]
        for im in record.images
    ):
        return "too_large"
    if boxed:
        return None if fmt_style is not None else "target_not_boxes"
    if any(_COORDS_IN_TEXT.search(m.text()) for m in record.messages):
        return "coordinates_in_text"
    return None


class Augmenter:
    """:func:`augment` with a seed, and counts of what it did.

    ``augmenter(record, key=(epoch, position))`` draws from a generator seeded by
    ``(seed, *key)``: the same record and key give the same result in any process or
    worker (a :class:`earthvlm.data.mixture.MixtureItem` carries such a key).

    Attributes:
        counts: ``<operation>`` -> records it changed; ``<operation>:<reason>`` -> records
            it skipped, by reason.
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r}: must be an integer >= 0")
        self.config = config or AugmentConfig()
        self.seed = seed
        self.counts: Counter[str] = Counter()

    def apply(self, record: Record, key: int | Sequence[int] = ()) -> AugmentResult:
        """Augment ``record`` with the generator of ``key``; counts what happened."""
        keys = [key] if isinstance(key, int) else list(key)
        result = augment(record, self.config, np.random.default_rng([self.seed, *keys]))
        self.counts.update(result.applied.keys())
        self.counts.update(f"{op}:{why}" for op, why in result.skipped.items())
        return result

    def __call__(self, record: Record, key: int | Sequence[int] = ()) -> Record:
        return self.apply(record, key).record


__all__ = [
    "DETECTION_ASK",
    "DOTA_SYNONYMS",
    "FAIR1M_SYNONYMS",
    "GROUNDING_ASK",
    "RESIZE_META_KEY",
    "RESIZE_TASKS",
    "SYNONYM_TABLES",
    "TEMPLATES",
    "AugmentConfig",
    "AugmentResult",
    "Augmenter",
    "Synonyms",
    "apply_resize",
    "augment",
    "choose_synonyms",
    "parse_prompt",
    "pluralise",
    "render_prompt",
    "resize_instruction",
    "resize_record",
    "synonym_table",
]
