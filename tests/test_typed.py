"""The one config builder: pydantic under the dataclasses, YAML without aliases, ``--set``."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from _work import cpu_seconds
from earthvlm.errors import ConfigError, EarthVLMError
from earthvlm.typed import (
    apply_overrides,
    build_dataclass,
    dump_yaml,
    load_yaml_config,
    parse_override,
    read_yaml,
)


@dataclass(frozen=True)
class Item:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class Section:
    steps: int = 1
    lr: float = 1e-3
    on: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"section.steps={self.steps}: must be >= 1")


@dataclass(frozen=True)
class Root:
    kind: Literal["a", "b"] = "a"
    section: Section = field(default_factory=Section)
    extra: Section | None = None
    items: tuple[Item, ...] = ()
    pair: tuple[float, float] = (0.0, 1.0)
    label: str = "x"


def _error(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        build_dataclass(Root, data)
    return str(info.value)


def test_builds_nested_dataclasses_equal_to_direct_construction() -> None:
    data = {
        "kind": "b",
        "section": {"steps": 3},
        "extra": {"lr": 2},
        "items": [{"name": "n"}],
        "pair": [1, 2],
    }
    got = build_dataclass(Root, data)
    assert got == Root("b", Section(steps=3), Section(lr=2.0), (Item("n"),), (1.0, 2.0))
    assert type(got.extra.lr) is float and got.pair == (1.0, 2.0)  # type: ignore[union-attr]
    assert data["section"] == {"steps": 3}  # the input is not modified


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # ints are strict: no floats (not even 2.0), no strings, no booleans
        ({"section": {"steps": 2.5}}, r"^section\.steps=2\.5: expected an integer$"),
        ({"section": {"steps": 2.0}}, r"section\.steps=2\.0: expected an integer"),
        ({"section": {"steps": "3"}}, r"section\.steps='3': expected an integer"),
        ({"section": {"steps": True}}, r"section\.steps=True: expected an integer"),
        # booleans are strict: no strings, no numbers
        ({"section": {"on": "yes"}}, r"section\.on='yes': expected true or false"),
        ({"section": {"on": 1}}, r"section\.on=1: expected true or false"),
        # floats take numbers and numeric strings, not booleans or words
        ({"section": {"lr": True}}, r"section\.lr=True: expected a number"),
        ({"section": {"lr": "fast"}}, r"section\.lr='fast': expected a number"),
        ({"label": 3}, r"label=3: expected a string"),
        ({"kind": "c"}, r"kind='c': choose one of \['a', 'b'\]"),
        (
            {"section": {"stps": 1}},
            r"unknown config key 'section\.stps'; did you mean 'section\.steps'\? "
            r"\(valid: steps, lr, on\)",
        ),
        ({"zzz": 1}, r"unknown config key 'zzz' \(valid: kind, section, extra, items, pair, "),
        ({"section": 3}, r"section: expected a mapping of Section fields, got 3"),
        ({"pair": [1.0]}, r"pair=\[1\.0\]: too few values"),
        ({"pair": [1, 2, 3]}, r"pair=\[1, 2, 3\]: expected at most 2 values"),
        ({"pair": "1,2"}, r"pair='1,2': expected a list"),
        ({"items": [{"weight": 1}]}, r"config is missing \['items\[0\]\.name'\]"),
        # an index into a list of named items says which item it is
        (
            {"items": [{"name": "a"}, {"name": "dota", "weight": "x"}]},
            r"items\[1\]\.weight='x': expected a number \(items\[1\] is 'dota'\)",
        ),
        ([1], r"expected a mapping of Root fields"),
    ],
)
def test_errors_name_the_dotted_key_the_value_and_what_is_allowed(
    data: object, message: str
) -> None:
    assert re.search(message, _error(data)), _error(data)


def test_yaml_1_1_exponents_are_floats() -> None:
    # YAML 1.1 reads 1e-5 (no dot) as a string; a float field takes it
    _, value = parse_override("section.lr=1e-5")
    assert value == "1e-5"
    assert build_dataclass(Root, apply_overrides({}, ["section.lr=1e-5"])).section.lr == 1e-5


def test_post_init_errors_keep_their_own_message() -> None:
    message = _error({"section": {"steps": 0}})
    assert message == "section.steps=0: must be >= 1"  # no pydantic boilerplate
    # named from where the section sits when it names itself from its own name
    assert _error({"extra": {"steps": 0}}).startswith("section.steps=0")
    with pytest.raises(ConfigError, match=r"^run\.section\.steps=0"):
        build_dataclass(Section, {"steps": 0}, where="run.section")


def test_every_error_is_reported_at_once_and_is_a_value_error() -> None:
    message = _error({"kind": "c", "section": {"steps": 1.5, "lr": "x"}})
    assert message.count(";") == 2 and "kind=" in message and "section.lr=" in message
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, EarthVLMError)


def test_long_lists_of_errors_and_long_values_are_cut_short() -> None:
    message = _error({"items": [{"name": str(i), "weight": "x"} for i in range(30)]})
    assert message.endswith("; and 20 more") and message.count("expected a number") == 10
    message = _error({"section": {"lr": "z" * 10_000}})
    assert message.endswith("...: expected a number") and len(message) < 120


def test_overrides_set_dotted_keys_and_refuse_non_sections() -> None:
    data = {"section": {"steps": 1}}
    out = apply_overrides(data, ["section.steps=4", "extra.lr=0.5", "kind=b"])
    assert out == {"section": {"steps": 4}, "extra": {"lr": 0.5}, "kind": "b"}
    assert data == {"section": {"steps": 1}}
    with pytest.raises(ConfigError, match=r"'kind' is not a section"):
        apply_overrides({"kind": "a"}, ["kind.x=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("section..steps=1")


BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _bomb(levels: int) -> str:
    """A billion-laughs YAML of ``levels`` alias levels (9 ** levels strings expanded)."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    from earthvlm.train.config import load_config

    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match=r"not valid YAML .*alias \*a: aliases are not allowed"):
        load_config(path)

    def refuse(levels: int) -> None:
        path.write_text(_bomb(levels))
        with pytest.raises(ConfigError, match="aliases are not allowed"):
            load_config(path)

    # refused before anything is expanded: 3x the levels (3x the file) is ~3x the work,
    # where expanding the aliases would multiply it by 9**6 (about half a million)
    ratio = cpu_seconds(refuse, 9) / cpu_seconds(refuse, 3)
    assert ratio < 20, f"9 alias levels took {ratio:.0f}x the CPU time of 3"
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        parse_override("section=" + "{x: &x [1], y: *x}")


def test_an_anchor_and_alias_in_a_config_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("section: &s {steps: 2}\nextra: *s\n")
    with pytest.raises(ConfigError, match=r"(?s)run\.yaml: not valid YAML .*alias \*s.*line 2"):
        read_yaml(path)


def test_written_configs_read_back_without_aliases(tmp_path: Path) -> None:
    shared = [1.0, 2.0]
    text = dump_yaml({"pair": shared, "again": shared})
    assert "&" not in text and "*" not in text
    path = tmp_path / "out.yaml"
    path.write_text(text)
    assert read_yaml(path) == {"pair": shared, "again": shared}


def test_load_yaml_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "root.yaml"
    path.write_text("kind: b\nsection: {steps: 2}\n")
    got = load_yaml_config(Root, path, ["section.lr=0.5"])
    assert got.kind == "b" and got.section == Section(steps=2, lr=0.5)
    with pytest.raises(ConfigError, match=r"root\.yaml: section\.steps=1\.5: expected an integer"):
        load_yaml_config(Root, path, ["section.steps=1.5"])
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_yaml_config(Root, tmp_path / "nope.yaml")
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"a config is a mapping of fields, got list"):
        load_yaml_config(Root, path)
    path.write_text("")
    assert load_yaml_config(Root, path) == Root()
