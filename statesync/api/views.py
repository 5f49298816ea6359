"""Read-only views that let strawberry's default resolvers read stored JSON documents.

Documents stay plain dicts end to end; a view converts the few values whose JSON
form differs from what the GraphQL scalar expects (datetimes) when a field is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

Converter = Callable[[Any], Any]


class DocumentView:
    __slots__ = ("_data",)
    converters: ClassVar[Mapping[str, Converter]] = {}

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocol probes (__await__, ...) must not look like fields
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            return None
        convert = self.converters.get(name)
        return value if convert is None or value is None else convert(value)


def view_class(name: str, converters: Mapping[str, Converter]) -> type[DocumentView]:
    return type(f"{name}View", (DocumentView,), {"__slots__": (), "converters": dict(converters)})


def parse_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def each(convert: Converter) -> Converter:
    return lambda values: [None if v is None else convert(v) for v in values]
