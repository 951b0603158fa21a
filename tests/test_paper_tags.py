"""Every value of the `paper` and `authors-code` presets carries a provenance tag ([paper], [code],
[deapnos]), and docs/paper.md §10 names the same source for each value."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from deapnos.search.config import CONFIG_DIR

DOC = Path(__file__).resolve().parents[1] / "docs" / "paper.md"
PRESETS = ("paper", "authors-code")
TAG = re.compile(r"\[(paper|code|deapnos)\b[^\]]*\]")


def preset_tags(name: str) -> dict[str, set[str]]:
    """``{"section.key": tags}`` of a preset.  A value's tags are those of its own comment, else of the
    comment lines right above it, else of its section's header line."""
    tags: dict[str, set[str]] = {}
    section, header, block = "", set(), set()
    rungs = -1
    for line in (CONFIG_DIR / f"{name}.toml").read_text().splitlines():
        code, _, comment = line.partition("#")
        code = code.strip()
        found = set(TAG.findall(comment))
        if not code:
            block = block | found if comment else set()
            continue
        m = re.match(r"^\[\[?([a-z_.]+)\]\]?$", code)
        if m:
            section = m.group(1)
            if code.startswith("[["):
                rungs += 1
                section = f"{section}[{rungs}]"
            header, block = found, set()
            continue
        m = re.match(r"^([a-z_]+)\s*=", code)
        if m:
            tags[f"{section}.{m.group(1)}"] = found or block or header
        block = set()
    return tags


def doc_tags() -> dict[str, dict[str, set[str]]]:
    """The table of docs/paper.md §10: ``{preset: {"section.key": tags}}``; a cell is ``value [tag] ...``
    or ``—`` where the preset does not set the key."""
    text = DOC.read_text()
    part = text.split("## 10. Where each preset value comes from", 1)[1]
    out: dict[str, dict[str, set[str]]] = {p: {} for p in PRESETS}
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        key = cells[0].strip("`")
        for preset, cell in zip(PRESETS, cells[1:3]):
            if cell != "—":
                out[preset][key] = set(TAG.findall(cell))
    return out


def test_every_value_of_both_presets_has_a_tag():
    for name in PRESETS:
        untagged = [k for k, t in preset_tags(name).items() if not t]
        assert not untagged, (name, untagged)


@pytest.mark.parametrize("name", PRESETS)
def test_the_docs_table_names_the_source_of_every_preset_value(name):
    mine, documented = preset_tags(name), doc_tags()[name]
    assert set(mine) == set(documented), (sorted(set(mine) - set(documented)), sorted(set(documented) - set(mine)))
    wrong = {k: (sorted(mine[k]), sorted(documented[k])) for k in mine if mine[k] != documented[k]}
    assert not wrong, wrong


def test_the_parser_sees_every_key_the_toml_sets():
    """An independent reading of the files (tomllib): the tag parser misses no key."""
    for name in PRESETS:
        data = tomllib.loads((CONFIG_DIR / f"{name}.toml").read_text())
        keys = set()
        for section, table in data.items():
            if section == "elimination":
                for i, rung in enumerate(table.get("rungs", [])):
                    keys |= {f"elimination.rungs[{i}].{k}" for k in rung}
            keys |= {f"{section}.{k}" for k in table if k != "rungs"}
        assert keys == set(preset_tags(name)), name


def test_the_disputed_values_carry_the_sources_the_issue_names():
    paper = preset_tags("paper")
    assert paper["search.timesteps"] == paper["search.mutants"] == {"code"}       # 5 x 7: the code and its log
    assert paper["elimination.baselines"] == {"deapnos"} and paper["elimination.candidates"] == {"deapnos"}
    assert all(paper[f"elimination.rungs[{i}].keep"] == {"deapnos"} for i in range(6))
    assert paper["elimination.rungs[1].task"] == {"paper", "deapnos"}           # the data set; model and length
    assert paper["search.max_age"] == {"code"} and paper["mutation.space"] == {"code"}
    text = (CONFIG_DIR / "paper.toml").read_text()
    assert "argues against aging" not in text and "m = 7" in text and "k = 5" in text
    assert "argues against aging" not in DOC.read_text()
