"""A local, rule-based judge behind the open-ended judge's real client path.

EarthMind-Bench's open-ended answers are scored by an LLM judge
(:func:`earthvlm.eval.judge.judge_open_ended`, any OpenAI-compatible server). Where no
judge model is available (an offline machine, a CI run), :func:`local_judge` starts a
loopback OpenAI-compatible server (:class:`~earthvlm.teacher.fake_server.FakeChatServer`)
whose replies come from :class:`VocabularyJudge`: it reads the reference and the answer
out of the rubric prompt, finds the vocabulary's names in each (e.g. object classes), and
scores their overlap on the rubric's 1-5 scale. The request, retry, cache, parse and
ledger code is the same as with an LLM judge; only the scorer differs.

It is a **stand-in, not an LLM**: it reads mentions of the vocabulary and nothing else
(no negation, counts, synonyms or paraphrase), so it suits answers that are lists of
names, such as "Which kinds of object are in the scene?", and a report that uses it must
say so (its :attr:`VocabularyJudge.description`). Pass a real judge's URL for anything
else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from earthvlm.teacher.client import ChatClient, ClientConfig
from earthvlm.teacher.fake_server import ChatCall, FakeChatServer, Reply, completion

# the judge prompt's markers (earthvlm.eval.judge._ITEM); a test builds prompts with
# build_judge_messages and reads them back, so a change there fails loudly here
_REFERENCE = re.compile(r"###Scoring Points \(ground truth\):\n(.*?)\n\n###Respondent", re.S)
_ANSWER = re.compile(r"<<<ANSWER\n(.*)\nANSWER>>>", re.S)
_SINGLE = "Output only the score"


class VocabularyJudge:
    """Scores an answer by the overlap of the vocabulary names it mentions with the
    reference's: accuracy ``1 + round(4 * F1)`` (5: the same names; 1: none shared or
    none named), relevance 5 when the answer names any vocabulary term, else 1.

    Callable as a :class:`~earthvlm.teacher.fake_server.FakeChatServer` script: it answers
    the ``"paper"`` rubric with ``{"accuracy": a, "relevance": r}`` and the ``"single"``
    rubric with the accuracy alone; a request that is not a judge prompt gets a 400.

    Args:
        vocabulary: The names to look for (case-insensitive, whole words, a plural "s"
            or "es" allowed); a longer name wins over a name inside it ("small vehicle"
            over "vehicle").

    Raises:
        ValueError: For an empty vocabulary or an empty name.
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        names = sorted({v.strip().lower() for v in vocabulary}, key=lambda v: (-len(v), v))
        if not names or not all(names):
            raise ValueError(f"vocabulary {list(vocabulary)!r}: give non-empty names")
        self.vocabulary = names
        alternatives = "|".join(re.escape(v).replace(r"\ ", r"\s+") for v in names)
        self._pattern = re.compile(rf"\b({alternatives})(?:e?s)?\b", re.IGNORECASE)

    @property
    def description(self) -> str:
        """What scored the answers, for a report."""
        return (
            f"a local rule-based judge (not an LLM): overlap of the {len(self.vocabulary)} "
            "class names mentioned in the answer and in the reference, accuracy = 1 + "
            "round(4 x F1), served on loopback through the OpenAI-compatible judge client"
        )

    def names(self, text: str) -> set[str]:
        """The vocabulary names ``text`` mentions."""
        return {re.sub(r"\s+", " ", m.group(1).lower()) for m in self._pattern.finditer(text)}

    def score(self, reference: str, answer: str) -> tuple[int, int]:
        """``(accuracy, relevance)`` of ``answer`` against ``reference``, each 1-5."""
        ref, got = self.names(reference), self.names(answer)
        shared = len(ref & got)
        f1 = 2 * shared / (len(ref) + len(got)) if ref or got else 1.0
        return 1 + round(4 * f1), 5 if got else 1

    def __call__(self, call: ChatCall) -> Reply:
        prompt = call.last_user_text
        ref, ans = _REFERENCE.search(prompt), _ANSWER.search(prompt)
        if ref is None or ans is None:
            return Reply(400, body={"error": {"message": "not a judge prompt (no scoring "
                                              "points or answer markers)"}})  # fmt: skip
        accuracy, relevance = self.score(ref.group(1), ans.group(1))
        if _SINGLE in prompt:
            return Reply(body=completion(str(accuracy), model="vocabulary-judge"))
        text = json.dumps({"accuracy": accuracy, "relevance": relevance})
        return Reply(body=completion(text, model="vocabulary-judge"))


@contextmanager
def local_judge(
    vocabulary: Sequence[str], *, cache_dir: str | None = None
) -> Iterator[tuple[ChatClient, VocabularyJudge]]:
    """A :class:`VocabularyJudge` served on loopback and a client for it.

    Yields:
        ``(client, judge)``: the client to pass to
        :func:`~earthvlm.eval.judge.judge_open_ended` and the judge (its
        ``description`` belongs in the report).
    """
    judge = VocabularyJudge(vocabulary)
    with FakeChatServer(judge) as server:
        config = ClientConfig(server.url, "vocabulary-judge", api_key_env=None,
                              max_retries=1, cache_dir=cache_dir)  # fmt: skip
        yield ChatClient(config), judge


__all__ = ["VocabularyJudge", "local_judge"]
