"""The one registry: names, lazy imports, duplicates, and errors that suggest a fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from earthvlm.errors import EarthVLMError
from earthvlm.registry import Registry, did_you_mean

PARTS = textwrap.dedent(
    """
    from dataclasses import dataclass


    class Part:
        name = "part"


    @dataclass
    class Widget(Part):
        name = "widget"
        size: int = 1

        def __post_init__(self):
            if self.size < 1:
                raise ValueError(f"size={self.size}: give a positive size")


    @dataclass
    class Plain(Part):
        name = "plain"


    class Gadget(Part):
        name = "gadget"

        def __init__(self, **options):
            self.options = options


    class Stranger:
        name = "stranger"


    NOT_A_CLASS = 3
    """
)


class PartError(EarthVLMError, ValueError):
    """The error of the test registry."""


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a fresh module of parts, importable and not yet imported."""
    name = f"registry_parts_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PARTS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _registry(parts: str, **kwargs: Any) -> Registry[type]:
    reg: Registry[type] = Registry("part", error=PartError, **kwargs)
    for cls in ("Widget", "Plain", "Gadget", "Stranger"):
        reg.register(cls.lower(), f"{parts}:{cls}")
    return reg


def test_registering_imports_nothing_and_get_imports_the_target(parts: str) -> None:
    reg = _registry(parts)
    assert parts not in sys.modules
    assert reg.names() == ["gadget", "plain", "stranger", "widget"]
    widget = reg.get("widget")
    assert parts in sys.modules and widget.__name__ == "Widget"
    assert reg.get("Widget ") is widget  # case and white space forgiven
    assert "WIDGET" in reg and "sprocket" not in reg and 3 not in reg


@pytest.mark.parametrize(
    ("separator", "name", "stored"),
    [("_", "My-Part", "my_part"), ("-", "My_Part", "my-part"), ("_", "a_b-c", "a_b_c")],
)
def test_names_are_stored_lower_case_with_one_separator(
    separator: str, name: str, stored: str
) -> None:
    reg: Registry[type] = Registry("part", separator=separator)
    reg.register(name, "collections:OrderedDict")
    assert reg.names() == [stored]
    assert reg.entries == {stored: "collections:OrderedDict"}
    assert reg.get(stored.replace(separator, "-" if separator == "_" else "_")).__name__ == (
        "OrderedDict"
    )


def test_duplicates_bad_targets_and_empty_names_are_refused(parts: str) -> None:
    reg = _registry(parts)
    with pytest.raises(PartError, match=r"part 'widget' is already registered as '.*:Widget'"):
        reg.register("Widget", f"{parts}:Gadget")
    with pytest.raises(PartError, match=r"'collections\.OrderedDict' is not 'module:attr'"):
        reg.register("od", "collections.OrderedDict")
    with pytest.raises(PartError, match="is not 'module:attr'"):
        reg.register("od", "collections:")
    with pytest.raises(PartError, match="needs a non-empty name"):
        reg.register("  ", "collections:OrderedDict")
    assert reg.names() == ["gadget", "plain", "stranger", "widget"]  # nothing half-added
    with pytest.raises(ValueError, match="separator"):
        Registry("part", separator=".")


def test_unknown_names_suggest_the_near_ones_and_list_the_known(parts: str) -> None:
    reg = _registry(parts)
    with pytest.raises(
        PartError, match=r"unknown part 'widgit'; did you mean widget, gadget\? Known: "
    ):
        reg.get("widgit")
    with pytest.raises(PartError, match=r"unknown part 'zzz' Known: gadget, plain, stranger"):
        reg.get("zzz")
    with pytest.raises(PartError, match="did you mean gadget"):
        reg.resolve("GADGE")
    assert reg.resolve("Gadget") == "gadget"


def test_targets_that_do_not_fit_are_refused_when_used(parts: str) -> None:
    reg = _registry(parts, base=object)  # any class fits
    reg.register("ghost", f"{parts}_nowhere:Ghost")
    reg.register("missing", f"{parts}:Missing")
    reg.register("three", f"{parts}:NOT_A_CLASS")
    with pytest.raises(PartError, match=rf"part 'ghost': cannot import {parts}_nowhere:Ghost"):
        reg.get("ghost")
    with pytest.raises(PartError, match="part 'missing': cannot import"):
        reg.get("missing")
    with pytest.raises(PartError, match="NOT_A_CLASS is not a object subclass"):
        reg.get("three")

    part = reg.get("widget").__mro__[1]  # the module's Part
    typed = _registry(parts, base=part)
    assert typed.get("widget").__name__ == "Widget"
    with pytest.raises(PartError, match=r"part 'stranger': .*:Stranger is not a Part subclass"):
        typed.get("stranger")

    named = _registry(parts, declares_name=True)
    named.register("alias", f"{parts}:Widget")
    assert named.get("widget").name == "widget"
    with pytest.raises(PartError, match="calls itself 'widget'; register it under the name"):
        named.get("alias")


def test_build_checks_a_dataclass_s_options(parts: str) -> None:
    reg = _registry(parts)
    assert reg.build("widget", size=3).size == 3
    with pytest.raises(PartError, match=r"widget: unknown option 'sise'; did you mean size\? "):
        reg.build("widget", sise=3)
    with pytest.raises(PartError, match="unknown option 'size' Options: none"):
        reg.build("plain", size=3)
    with pytest.raises(ValueError, match="size=0: give a positive size"):
        reg.build("widget", size=0)
    # not a dataclass: the class itself judges its options
    assert reg.build("gadget", anything=1).options == {"anything": 1}


def test_the_default_error_is_the_project_s() -> None:
    reg: Registry[type] = Registry("thing")
    with pytest.raises(EarthVLMError, match="unknown thing 'x'"):
        reg.get("x")


def test_did_you_mean() -> None:
    assert did_you_mean("colour", ["color", "flavour", "zebra"]) == "; did you mean color, flavour?"
    assert did_you_mean("colour", ["color", "flavour"], n=1) == "; did you mean color?"
    assert did_you_mean("q", ["zebra"]) == ""


def test_the_registry_imports_no_torch() -> None:
    code = "import sys, earthvlm.registry\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
