"""B3: the GSD stated in the prompt."""

from __future__ import annotations

from earthvlm.data.gsd_text import gsd_sentence, with_gsd_text
from earthvlm.data.record import Record
from earthvlm.scale.gsd import GSD


def _record(gsds: list) -> Record:
    parts = [{"type": "image", "index": k} for k in range(len(gsds))]
    return Record.model_validate(
        {
            "id": "r", "task": "vqa", "source": "t",
            "images": [{"path": f"{k}.tif", "gsd": g} for k, g in enumerate(gsds)],
            "messages": [
                {"role": "user", "content": [*parts, {"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "a car"},
            ],
        }
    )  # fmt: skip


def test_each_known_gsd_is_stated_after_its_image() -> None:
    rec = _record([0.3, None, 12.0])
    out = with_gsd_text(rec)
    text = out.messages[0].text()
    assert "0.3 m per pixel" in text and "12 m per pixel" in text
    assert text.count("ground sampling distance") == 2  # the unknown one gets none
    assert text.endswith("What is it?")
    assert out.messages[0].image_indexes() == [0, 1, 2]
    assert rec.messages[0].text() == "What is it?"  # the input is not mutated


def test_spoofing_by_replacing_the_gsd() -> None:
    rec = _record([0.15])
    spoofed = rec.model_copy(
        update={"images": [rec.images[0].model_copy(update={"gsd": GSD.exact(1.5)})]}
    )
    assert "1.5 m per pixel" in with_gsd_text(spoofed).messages[0].text()
    assert (
        gsd_sentence(13900.0) == "The ground sampling distance of this image is 13.9 km per pixel."
    )
