"""A tiny byte-level BPE tokenizer with the Qwen special tokens, trained offline.

Real Qwen checkpoints ship a 151k-token vocabulary; tests and CPU experiments need none
of it. :func:`build_tiny_tokenizer` trains a byte-level BPE (the same pre-tokenizer
regex and byte mapping as Qwen2) on a few KB of remote-sensing text embedded below, then
wraps it as a ``Qwen2Tokenizer`` so that everything downstream (processors, TRL, chat
templates) sees the class it expects. Training is deterministic: same corpus, same
vocabulary, same ids.

Token ids are laid out as in Qwen: the BPE vocabulary first, then ``<|endoftext|>``,
``<|im_start|>``, ``<|im_end|>``, the vision tokens, and the ordinary added tokens
(``<tool_call>`` ... ``</think>``), so that ``len(tokenizer)`` is the model's vocab size.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Any

#: Special tokens, in Qwen's id order. They never split and ``skip_special_tokens`` drops them.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Ordinary added tokens: atomic, but kept by ``skip_special_tokens`` (the model writes them).
ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
#: Total vocabulary (BPE + special + added) of the tiny tokenizer.
TINY_VOCAB_SIZE = 1024

_CLASSES = [
    "airplane",
    "airport",
    "baseball",
    "field",
    "basketball",
    "court",
    "bridge",
    "building",
    "car",
    "chimney",
    "dam",
    "expressway",
    "service",
    "area",
    "expressway",
    "toll",
    "station",
    "golf",
    "field",
    "ground",
    "track",
    "field",
    "harbor",
    "overpass",
    "ship",
    "stadium",
    "storage",
    "tank",
    "tennis",
    "court",
    "train",
    "station",
    "vehicle",
    "windmill",
    "roundabout",
    "helicopter",
    "container",
    "crane",
    "swimming",
    "pool",
    "soccer",
    "field",
    "parking",
    "lot",
    "large",
    "vehicle",
    "small",
    "vehicle",
    "plane",
    "tank",
]
_LAND_COVER = [
    "tree cover",
    "shrubland",
    "grassland",
    "cropland",
    "built-up",
    "bare or sparse vegetation",
    "snow and ice",
    "permanent water bodies",
    "herbaceous wetland",
    "mangroves",
    "moss and lichen",
    "forest",
    "river",
    "lake",
    "farmland",
    "meadow",
    "desert",
    "beach",
    "residential",
    "industrial",
    "commercial",
    "dense residential",
    "sparse residential",
    "road",
    "railway",
    "urban",
    "rural",
]
_TEMPLATES = (
    "What is the object in the image?",
    "What is the object?",
    "How many {c}s are there in the image?",
    "Is there a {c} in the image? Answer yes or no.",
    "Where is the {c}? Give the bounding box.",
    "What is the land cover type of this scene?",
    "What is the ground sampling distance of this image in metres?",
    "Which option best describes the {c}? A. {c} B. {l} C. bridge D. ship E. none",
    "Describe the image in one sentence.",
    "Locate every {c} and answer with boxes.",
    "Is the {l} larger than the {c}?",
    "Zoom in on the region that contains the {c}.",
)
_CAPTIONS = """\
Many buildings and green trees are around a playground. A bridge crosses the river near
some farmland. Several white storage tanks stand in an industrial area next to a road.
Planes are parked at the terminal of the airport beside the runway and taxiway. Ships are
docked in the harbor while boats sail on the blue sea. A roundabout connects four roads in
a dense residential neighbourhood. Cars and trucks drive on the highway through the
desert. The stadium has an oval track with a green football pitch inside. Rows of houses
with red roofs line the streets of this suburban area. Irrigated circular fields appear as
green circles on brown bare land. A dam holds back a reservoir in the mountains. Snow
covers the peaks while clouds cast shadows over the valley. Wind turbines stand in a line
on the hill. Solar panels cover the roof of a factory. A golf course with sand bunkers and
ponds lies beside a forest. The parking lot is full of vehicles of different colours.
Two tennis courts and a swimming pool are next to the school. A railway station with long
platforms and trains sits in the centre of the city. Mangroves and wetlands border the
coast, and waves break on the beach. Containers are stacked at the port near cranes.
The image was captured by a satellite sensor with a resolution of half a metre; the scene
is an optical, SAR or multispectral view with near infrared and panchromatic bands.
North, south, east, west, left, right, top, bottom, upper, lower, middle, corner, edge.
Small, medium, large, tiny, huge, long, short, wide, narrow, round, square, rectangular.
"""
_ANSWERS = ("Yes.", "No.", "yes", "no", "A", "B", "C", "D", "E", "A.", "B.", "C.", "D.", "E.")


def _corpus() -> list[str]:
    """The embedded training text: class names, questions, answers, boxes, tool JSON."""
    rng = random.Random(0)  # fixed: the corpus (and so the vocabulary) never changes
    lines: list[str] = [" ".join(_CLASSES), ", ".join(_LAND_COVER), " ".join(_ANSWERS)]
    lines += _CAPTIONS.splitlines()
    lines.append(" ".join(str(i) for i in range(0, 1001, 37)))
    lines.append("0123456789 0.5 1.0 0.3 2.5 10 m 30 m 4.5 m GSD metres per pixel")
    lines.append("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz")
    lines.append("! \" # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \\ ] ^ _ ` { | } ~")
    for i, c in enumerate(_CLASSES):
        land = _LAND_COVER[i % len(_LAND_COVER)]
        for t in _TEMPLATES[i % 6 :: 5]:
            lines.append(t.format(c=c, l=land))
        box = sorted(rng.randrange(1000) for _ in range(4))
        x0, y0, x1, y1 = box[0], box[1], box[2], box[3]
        lines.append(f"The {c} is at [{x0}, {y0}, {x1}, {y1}].")
        lines.append(json.dumps({"bbox_2d": [x0, y0, x1, y1], "label": c}))
        lines.append(
            f"<think>The image shows {land}. The {c} is small, so I zoom in.</think>"
            f"<tool_call>\n"
            + json.dumps({"name": "zoom_in", "arguments": {"bbox_2d": [x0, y0, x1, y1]}})
            + "\n</tool_call>"
        )
        lines.append(f"<tool_response>\ncrop of the {c}\n</tool_response>")
        lines.append(f"<think>It is a {c}.</think>The answer is {c}.")
    return lines


def _train_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # The same normalizer and pre-tokenizer as Qwen2Tokenizer, so merges mean the same.
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    if len(vocab) != vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size}: the embedded corpus only supports {len(vocab)} BPE "
            f"tokens; ask for at most {len(vocab) + len(SPECIAL_TOKENS) + len(ADDED_TOKENS)}"
        )
    return vocab, merges  # type: ignore[return-value]


@lru_cache(maxsize=4)
def _bpe(vocab_size: int) -> tuple[str, str]:
    vocab, merges = _train_bpe(vocab_size)
    return json.dumps(vocab), json.dumps(merges)


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE):
    """A ``Qwen2Tokenizer`` of ``vocab_size`` tokens in all, trained on the embedded corpus.

    Args:
        vocab_size: total size (BPE tokens + 7 special + 6 added tokens); at least 270.

    Returns:
        A fresh ``transformers.Qwen2Tokenizer`` (eos ``<|im_end|>``, pad ``<|endoftext|>``).
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    n_bpe = vocab_size - len(SPECIAL_TOKENS) - len(ADDED_TOKENS)
    if n_bpe < 257:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the 256 byte tokens and "
            f"{len(SPECIAL_TOKENS) + len(ADDED_TOKENS)} special tokens need at least "
            f"{257 + len(SPECIAL_TOKENS) + len(ADDED_TOKENS)}"
        )
    vocab_json, merges_json = _bpe(n_bpe)
    vocab = json.loads(vocab_json)
    merges = [tuple(m) for m in json.loads(merges_json)]
    # Place special and added tokens in the vocabulary itself so their ids are fixed (in
    # Qwen's order) rather than depending on the order the tokenizer happens to add them.
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=list(SPECIAL_TOKENS),
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    if len(tokenizer) != vocab_size:  # a transformers change would silently shift ids
        raise RuntimeError(f"tiny tokenizer has {len(tokenizer)} tokens, expected {vocab_size}")
    return tokenizer


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of byte-level BPE's byte -> printable character map (GPT-2's, which
    Qwen2 uses): printable Latin-1 bytes map to themselves, the rest to U+0100 on."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def decode_text(tokenizer: Any, ids: list[int], *, skip_special_tokens: bool = True) -> str:
    """``tokenizer.decode`` without replacement characters: a byte-level tokenizer's
    tokens become bytes, and bytes that are not UTF-8 (a random model's, or a character
    cut at the token budget) show as ``\\xNN`` escapes instead of U+FFFD, so an answer
    never prints as a row of question-mark boxes. Other tokenizers decode as usual."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if type(decoder).__name__ != "ByteLevel":
        return tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
    to_byte = _unicode_to_byte()
    added = set(tokenizer.get_added_vocab())
    parts: list[str] = []
    buf = bytearray()

    def flush() -> None:
        if buf:
            parts.append(buf.decode("utf-8", errors="backslashreplace"))
            buf.clear()

    for token in tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens):
        if token is None:
            continue
        if token not in added and all(ch in to_byte for ch in token):
            buf.extend(to_byte[ch] for ch in token)
        else:  # an added token (<tool_call>, ...) is text as it stands
            flush()
            parts.append(token)
    flush()
    return "".join(parts)
