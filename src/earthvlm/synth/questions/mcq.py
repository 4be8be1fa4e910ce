"""Multiple-choice questions: :func:`to_mcq` turns a categorical QA into lettered
options, and the :func:`mcq` generator does so for another generator's question."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from earthvlm.data.letters import OPTION_LETTERS
from earthvlm.synth.catalogue import CLASSES, CONFUSION
from earthvlm.synth.scene import LAND_USE

from .facts import CELL_NAMES, COLOURS, QA, QUADRANTS, RELATIONS, SceneFacts, _pick

LETTERS = OPTION_LETTERS[:5]
_POOLS: dict[str, tuple[str, ...]] = {
    "class": tuple(sorted(CLASSES)),
    "land_use": tuple(sorted(set(LAND_USE.values()))),
    "colour": COLOURS,
    "relation": RELATIONS,
    "cell": tuple(n for row in CELL_NAMES for n in row),
    "quadrant": tuple(n for row in QUADRANTS for n in row),
    "yes_no": ("yes", "no"),
    "orientation": ("horizontally", "vertically"),
    "urban_rural": ("urban", "rural"),
}
MCQ_INSTRUCTION = "Answer with the letter of the correct option."


def _answer_type(value: str) -> str:
    if re.fullmatch(r"\d+", value):
        return "count"
    for name, pool in _POOLS.items():
        if value in pool:
            return name
    raise ValueError(f"answer {value!r} is not categorical: cannot make a multiple choice")


def _count_distractors(n: int, k: int, rng: np.random.Generator) -> list[str]:
    near: list[int] = []
    step = 1
    while len(near) < k + 2:
        near += [v for v in (n - step, n + step) if v >= 0]
        step += 1
    picked = rng.choice(len(near), size=k, replace=False)
    return [str(near[i]) for i in sorted(picked)]


def to_mcq(
    qa: QA, rng: np.random.Generator, options: int = 4, pool: Sequence[str] | None = None
) -> QA:
    """A multiple-choice version of a QA with a categorical answer.

    The options, labelled (A), (B), ..., are the correct value and ``options - 1``
    distractors, shuffled; the answer is the correct letter. Distractors come from the
    answer type (``meta["answer_type"]``, else inferred from the value): nearby numbers
    for counts (never negative), the hard negative (``meta["hard_negative"]`` or the
    confusion table) first and then other catalogue classes for classes, the other
    colours, land uses, relations, grid cells, ... Everything random comes from
    ``rng``: the same seed gives the same question.

    Args:
        qa: The question; ``meta["stem"]`` replaces its text when the plain question
            reads badly with options ("is this A or B?").
        rng: The random generator.
        options: Number of options, 2-5.
        pool: Candidate distractors to use instead of the answer type's.

    Raises:
        ValueError: For a non-categorical answer, or too few distinct distractors.
    """
    if not 2 <= options <= len(LETTERS):
        raise ValueError(f"options must be in 2..{len(LETTERS)}, got {options}")
    value = str(qa.meta.get("answer_value", qa.answer))
    atype = qa.meta.get("answer_type")
    if not atype:
        try:
            atype = _answer_type(value)
        except ValueError:
            if pool is None:
                raise
            atype = "custom"
    atype = str(atype)
    k = options - 1
    if pool is None and atype == "count":
        if not re.fullmatch(r"\d+", value):
            raise ValueError(f"count answer {value!r} is not a non-negative integer")
        distractors = _count_distractors(int(value), k, rng)
    else:
        if pool is None:
            if atype not in _POOLS:
                raise ValueError(f"answer type {atype!r} has no option pool; pass pool=")
            pool = _POOLS[atype]
        cands = list(dict.fromkeys(str(p) for p in pool if str(p) != value))
        first: list[str] = []
        if atype == "class":
            hard = qa.meta.get("hard_negative") or CONFUSION.get(value)
            if hard in cands:
                first = [hard]
                cands.remove(hard)
        if len(first) + len(cands) < k:
            raise ValueError(
                f"{options} options need {k} distractors; {atype!r} offers "
                f"{len(first) + len(cands)} besides {value!r}"
            )
        order = rng.permutation(len(cands))
        distractors = first + [cands[i] for i in order[: k - len(first)]]
    choices = [value, *distractors]
    perm = rng.permutation(options)
    shown = [choices[i] for i in perm]
    letter = LETTERS[int(np.flatnonzero(perm == 0)[0])]
    lines = [f"({LETTERS[i]}) {c}" for i, c in enumerate(shown)]
    stem = str(qa.meta.get("stem", qa.question))
    question = "\n".join([stem, "The choices are listed below:", *lines, MCQ_INSTRUCTION])
    meta = {k2: v for k2, v in qa.meta.items() if k2 != "stem"}
    meta.update(
        answer_type=atype, answer_value=value, options=lines, choices=shown,
        source_task=qa.task, source_kind=qa.kind,
    )  # fmt: skip
    return QA("mcq", "mcq", question, letter, qa.boxes, meta)


#: Generators whose categorical questions :func:`mcq` turns into multiple choice.
_MCQ_SOURCES = (
    "identification", "scale_specific", "discriminative", "count", "grid_count", "colour",
    "relation",
)  # fmt: skip


def mcq(facts: SceneFacts, rng: np.random.Generator) -> list[QA]:
    """One four-option multiple-choice question made from another generator's
    categorical question (identification, land use, counting, colour, relation, ...)."""
    # The registry lives in the package's __init__, which imports this module.
    from . import GENERATORS

    sub = np.random.default_rng(int(rng.integers(1 << 62)))
    cands = [qa for name in _MCQ_SOURCES for qa in GENERATORS[name](facts, sub)]
    ok = []
    for qa in cands:
        try:
            ok.append(to_mcq(qa, sub))
        except ValueError:
            continue
    return [_pick(rng, ok)] if ok else []
