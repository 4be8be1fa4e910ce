"""Multiple-choice answer letters, as the benchmark releases write them.

Its own module, with nothing but the standard library, because both the release readers
(``data.sources``) and the torch-free scorers (``eval.metrics.mcq``) need it, and the
scorers must not import the readers' raster and record stack to get it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: The option letters, in order: the one home of the alphabet every multiple-choice reader,
#: generator and scorer uses (releases use up to ten: A-J).
OPTION_LETTERS = "ABCDEFGHIJ"


def answer_letters(answer: Any) -> frozenset[str]:
    """The letter set of an ``answer``: ``"A"``, ``"AB"``, ``"A,B"``, ``"(A)"`` or
    ``["A", "B"]``.

    Raises:
        ValueError: If no upper-case letter is found.
    """
    if isinstance(answer, str):
        found = re.findall(r"[A-Z]", answer)
    elif isinstance(answer, Sequence) and all(isinstance(a, str) for a in answer):
        found = [a.strip().upper() for a in answer if a.strip()]
    else:
        found = []
    if not found or any(len(f) != 1 for f in found):
        raise ValueError(f"answer {answer!r} holds no option letters")
    return frozenset(found)


__all__ = ["OPTION_LETTERS", "answer_letters"]
