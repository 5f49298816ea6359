"""The README's configuration table is the settings' documentation: every setting is in
it, with its real default, and nothing in it is not a setting."""

from __future__ import annotations

import re
from pathlib import Path

from statesync.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `STATESYNC_([A-Z_]+)` \| `?([^|`]*)`?[^|]*\| (.+) \|$")


def documented() -> dict[str, str]:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1).lower()] = match.group(2).strip()
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    rows = documented()
    fields = Settings.model_fields
    assert set(rows) == set(fields), (set(fields) - set(rows), set(rows) - set(fields))
    for name, info in fields.items():
        default = info.default
        if default is None:
            assert rows[name] == "unset", name
        elif isinstance(default, bool):
            assert rows[name] == str(default).lower(), name
        elif isinstance(default, float) and default.is_integer() and "." not in rows[name]:
            assert float(rows[name]) == default, name
        else:
            assert rows[name] == str(default), (name, rows[name], default)
