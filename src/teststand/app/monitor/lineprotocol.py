"""InfluxDB line protocol: `measurement,tag=v field=1.5,text="a" 1700000000000000000`."""

from __future__ import annotations

from collections.abc import Mapping

FieldValue = float | int | bool | str


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    time_ns: int,
) -> str:
    """One point; empty tag values are left out (line protocol has no empty tags)."""
    head = measurement.replace(",", "\\,").replace(" ", "\\ ")
    tag_text = "".join(
        f",{_escape_key(key)}={_escape_key(value)}" for key, value in sorted(tags.items()) if value
    )
    field_text = ",".join(f"{_escape_key(key)}={_field(value)}" for key, value in fields.items())
    return f"{head}{tag_text} {field_text} {time_ns}"
