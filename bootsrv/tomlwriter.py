"""TOML out: `dumps(data) -> str`, the inverse of `tomllib.loads` for the data a Config dumps to.

Python's standard library reads TOML (tomllib) but does not write it; `bootsrv config show`
prints the effective config as TOML that `bootsrv config check` reads back unchanged. The
shapes are those of `Config.model_dump(mode="json")`: tables, arrays of tables (networks and
their ranges), inline tables (DHCP options by number) and scalars. This small emitter covers
them, so bootsrv needs no TOML-writing dependency.
"""

from __future__ import annotations

import re
from typing import Any

# TOML 1.0 bare keys: ASCII letters, digits, "-" and "_" only ("¹".isalnum() is true in Python).
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# TOML 1.0 basic strings: '"', "\\" and the control characters U+0000-U+001F and U+007F other
# than tab must be escaped. Option 43 vendor strings and the like can carry any of them.
_ESCAPES = {c: f"\\u{c:04X}" for c in (*range(0x20), 0x7F) if c != 0x09}
_ESCAPES.update({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r"})


def dumps(data: dict[str, Any]) -> str:
    """`data` as a TOML document: its scalars and inline values first, then its tables."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if key in scalars:
            continue
        if isinstance(value, dict):
            _dump_table(lines, [key], value)
        else:  # array of tables
            for item in value:
                _dump_table(lines, [key], item, array=True)
    return "\n".join(lines).strip() + "\n"


def _dump_table(lines: list[str], path: list[str], table: dict[str, Any], array: bool = False) -> None:
    header = ".".join(_toml_key(p) for p in path)
    lines.append("")
    lines.append(f"[[{header}]]" if array else f"[{header}]")
    nested = []
    for key, value in table.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            nested.append((key, value))
        elif _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in nested:
        if isinstance(value, dict):
            _dump_table(lines, path + [key], value)
        else:
            for item in value:
                _dump_table(lines, path + [key], item, array=True)


def _is_table_array(value: Any) -> bool:
    # Only a list of tables alone is an array of tables; any other list is written inline
    # (TOML 1.0 arrays may mix types: [1, { a = 1 }]).
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_value(str(key))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return f'"{value.translate(_ESCAPES)}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
