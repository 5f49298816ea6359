"""`statesync watch`: a subscription in a terminal, one JSON line per message, with no
websocket client to write. It is the Python client's ``watch`` (resume after a reconnect
included); without ``--fields`` it asks the schema for the model's plain fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import orjson
from strawberry.utils.str_converters import to_camel_case

from statesync.client import Change, Client

# Fields whose type unwraps to one of these can be selected without a sub-selection.
_PLAIN = ("SCALAR", "ENUM")
_FIELDS = """query($name: String!) { __type(name: $name) { fields { name type {
  kind ofType { kind ofType { kind ofType { kind } } } } } } }"""


def plain_fields(introspected: Mapping[str, Any] | None) -> list[str]:
    """The names of a type's fields that are scalars or enums (lists of them included)."""
    if introspected is None:
        return []
    names = []
    for field in introspected["fields"]:
        kind = field["type"]
        while kind["kind"] in ("NON_NULL", "LIST") and kind.get("ofType"):
            kind = kind["ofType"]
        if kind["kind"] in _PLAIN:
            names.append(field["name"])
    return names


def as_line(change: Change) -> bytes:
    """One message as a JSON line, named as GraphQL names it, the parts that do not apply
    left out."""
    return orjson.dumps({to_camel_case(k): v for k, v in asdict(change).items() if v is not None})


async def watch(client: Client, model: str, *, id: str | None, where: Mapping[str, Any] | None,
                fields: str | None, since: str | None, out: Callable[[bytes], None]) -> None:
    """Write every message of the watch to ``out`` until it is interrupted."""
    if fields is None:
        found = (await client.query(_FIELDS, {"name": model}))["__type"]
        if found is None:
            raise LookupError(f"the schema has no model {model!r}")
        fields = " ".join(name for name in plain_fields(found) if name not in ("id", "version"))
    async for change in client.watch(model, id=id, where=where, fields=fields, since=since):
        out(as_line(change) + b"\n")
