"""Record what METEOR 1.5 (the Java jar, as pycocoevalcap 1.2 runs it) says of a small
caption set, for ``test_meteor.py``. Needs Java and an unpacked pycocoevalcap 1.2 (the
wheel from the package index: ``pip download pycocoevalcap==1.2 --no-deps`` and unzip);
the jars themselves are not committed.

    python tests/eval/metrics/make_meteor_fixture.py /path/to/pycocoevalcap

writes ``tests/eval/metrics/data/meteor_java.json``: the PTB-tokenised captions (the
jar's input), per caption the jar's 23 statistics and score, the corpus score, the same
with the exact module only (``-m exact``), and the jar's ``Normalizer`` on a few lines.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "data" / "meteor_java.json"

# stems, WordNet synonyms, paraphrases, function words, identical pairs, several
# references, brackets, hyphens, abbreviations, numbers, repeated words
HAND = [
    ("Two planes are parked at the airport.", ["Two airplanes parked at an airport."]),
    ("A lot of cars are next to the building.", ["Many cars are beside the building.",
                                                 "Several automobiles near a building."]),
    ("the cat sat on the mat", ["the cat sat on the mat"]),
    ("the cat sat on the mat", ["on the mat the cat sat"]),
    ("Ships docked in the harbour", ["A ship is docking at the harbor."]),
    ("a black-and-white plane (left) near the U.S. runway",
     ["a black and white aircraft on the left of the runway"]),
    ("many many trees trees", ["a forest with trees"]),
    ("there is nothing", ["a big green meadow with some houses around it"]),
    ("Roads cross the residential area; houses are densely packed.",
     ["The dense residential area is crossed by roads.", "Houses are packed densely."]),
    ("Storage tanks, 3.5 m wide, stand by the sea", ["some oil tanks stand close to the sea"]),
    ("A baseball field is surrounded by green trees",
     ["The baseball diamond is surrounded by many green trees.",
      "green trees surround a baseball field", "A playground with trees around"]),
    ("boats", ["boat"]),
    ("the", ["the"]),
    ("a plane", ["an aeroplane"]),
    ("It's a river running through the city", ["A river runs through the town."]),
]  # fmt: skip
NORMALISE = [
    "a black-and-white plane -lrb- left -rrb- near the u.s. runway",
    "it 's a river ... ok ?! 3.5 m. 1,000 e-mail/web $ 5 & x=3",
    "the ship 's bow , mr. smith 's car and dr. who at no. 5 -- done",
    "Quotes `` like '' this and \u2018single\u2019 \u201cdouble\u201d \u2013 dash",
]


def natural(rng: random.Random) -> str:
    many = ["many", "a lot of", "lots of", "several", "a number of", "some", "numerous"]
    objs = ["planes", "airplanes", "cars", "vehicles", "buildings", "houses", "trees", "ships",
            "boats", "storage tanks", "tennis courts"]  # fmt: skip
    places = ["the airport", "a parking lot", "the harbor", "a river", "the road", "the city",
              "a residential area", "the beach", "a green meadow"]  # fmt: skip
    preps = ["near", "next to", "beside", "close to", "around", "on", "in", "along", "by"]
    verbs = ["are parked", "are located", "are", "lie", "stand", "are arranged", "sit"]
    s = f"{rng.choice(many)} {rng.choice(objs)} {rng.choice(verbs)} {rng.choice(preps)} "
    s += rng.choice(places)
    if rng.random() < 0.3:
        s = f"there are {s.replace(' are ', ' ', 1)}"
    return s[0].upper() + s[1:] + rng.choice([".", ""])


def main(pycocoevalcap: Path) -> None:
    sys.path.insert(0, str(pycocoevalcap.parent))
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    rng = random.Random(19)
    items = list(HAND) + [
        (natural(rng), [natural(rng) for _ in range(rng.randint(1, 4))]) for _ in range(35)
    ]
    gts = {i: [{"caption": r} for r in refs] for i, (_, refs) in enumerate(items)}
    res = {i: [{"caption": h}] for i, (h, _) in enumerate(items)}
    tok = PTBTokenizer()
    gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
    captions = [{"hyp": res_t[i][0], "refs": gts_t[i]} for i in range(len(items))]
    jar_dir = pycocoevalcap / "meteor"

    def jar(lines: list[str], *extra: str) -> list[str]:
        cmd = ["java", "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en",
               "-norm", *extra]  # fmt: skip
        run = subprocess.run(cmd, cwd=jar_dir, input="\n".join(lines) + "\n",
                             capture_output=True, text=True, check=True)  # fmt: skip
        return run.stdout.strip().splitlines()

    out: dict[str, object] = {"captions": captions}
    for name, extra in (("full", ()), ("exact", ("-m", "exact"))):
        scored = ["SCORE ||| " + " ||| ".join(c["refs"]) + " ||| " + c["hyp"] for c in captions]
        stats = jar(scored, *extra)
        scores = [float(x) for x in jar(["EVAL ||| " + " ||| ".join(stats)], *extra)]
        out[name] = {"stats": stats, "scores": scores[:-1], "corpus": scores[-1]}
    norm = subprocess.run(
        ["java", "-cp", "meteor-1.5.jar", "edu.cmu.meteor.util.Normalizer", "en", "true"],
        cwd=jar_dir, input="\n".join(NORMALISE) + "\n", capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    out["normalise"] = [
        [line, got.lower()] for line, got in zip(NORMALISE, norm.stdout.splitlines(), strict=True)
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(captions)} captions, METEOR {out['full']['corpus']:.4f}")  # type: ignore[index]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
