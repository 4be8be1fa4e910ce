"""GSD as text in the prompt: the B3 baseline of ScaleEarth (App. A.1, A.3).

B3 gives the model the GSD as words ("The ground sampling distance is 0.30 m per
pixel.") before the question, with a standard LoRA adapter. It is how earlier RS-VLMs
inject scale; ScaleEarth shows it elicits little scale-conditioned behaviour. Each image
with a known GSD gets its sentence right after its image part; unknown GSDs get none.
"""

from __future__ import annotations

from earthvlm.data.record import ImagePart, Message, Record, TextPart
from earthvlm.scale.gsd import format_m

TEMPLATE = "The ground sampling distance of this image is {gsd} per pixel."


def gsd_sentence(gsd_m: float, template: str = TEMPLATE) -> str:
    """The sentence for one GSD (``format_m`` units: ``0.3 m``, ``13.9 km``)."""
    return template.format(gsd=format_m(gsd_m))


def with_gsd_text(record: Record, template: str = TEMPLATE) -> Record:
    """A copy of ``record`` whose user turns state each image's GSD after the image.

    A spoofed GSD can be given by replacing the images' GSDs first. The record is not
    mutated.
    """
    messages = []
    for msg in record.messages:
        if msg.role != "user" or isinstance(msg.content, str):
            messages.append(msg)
            continue
        parts: list[TextPart | ImagePart] = []
        for part in msg.content:
            parts.append(part)
            if isinstance(part, ImagePart):
                gsd = record.images[part.index].gsd
                if gsd.is_known:
                    parts.append(TextPart(text=gsd_sentence(gsd.point_m, template) + " "))
        messages.append(Message(role=msg.role, content=parts))
    return record.model_copy(update={"messages": messages})
