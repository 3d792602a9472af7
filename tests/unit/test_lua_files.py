"""The Lua scripts as files: each with its contract at the top, and luacheck's view of the
names a script gets from what runs before it equal to what does run before it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processors.store import lua

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("batch_codec", "prelude", "count_buckets", "compare")


def top_level_names(text: str) -> list[str]:
    """The names a Lua chunk declares at its top level (`local function f`, `local a, b =`)."""
    names: list[str] = []
    for line in text.splitlines():
        match = re.match(r"^local function (\w+)", line) or re.match(r"^local ([\w, ]+?)\s*=", line)
        if match:
            names += [name.strip() for name in match.group(1).split(",")]
    return list(dict.fromkeys(names))


def luacheckrc_list(name: str) -> list[str]:
    text = (ROOT / ".luacheckrc").read_text()
    body = re.search(rf"local {name} = \{{(.*?)\n\}}", text, re.S)
    assert body, name
    return re.findall(r'"(\w+)"', body.group(1))


def test_luacheck_knows_the_constants_and_the_shared_names() -> None:
    """What `.luacheckrc` declares is exactly what lua.py's constants and the shared files
    declare: a name added to one and not the other fails here, not in Redis."""
    assert luacheckrc_list("constants") == top_level_names(lua.constants())
    shared = [n for f in SHARED for n in top_level_names((lua.SCRIPTS / f"{f}.lua").read_text())]
    assert luacheckrc_list("shared") == shared


SCRIPTS = sorted(p.stem for p in lua.SCRIPTS.glob("*.lua") if p.stem not in SHARED)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_is_loaded_and_states_its_contract(name: str) -> None:
    """Every script file is one of lua.py's scripts, and opens with what it takes and
    returns."""
    text = (lua.SCRIPTS / f"{name}.lua").read_text()
    loaded = getattr(lua, name.upper())
    assert loaded.startswith(lua.constants()) and loaded.endswith(text)
    head = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    assert name.upper() in head.split("\n", 1)[0] or name == "recount_begin", head[:80]
    assert "KEYS" in head and ("Returns" in head or "compare.lua" in head or "return" in head)
