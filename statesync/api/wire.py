"""Decoding what a client sends (HTTP bodies, websocket messages), strictly.

orjson is strict in every way statesync needs (UTF-8 only, no NaN or Infinity, no lone
surrogates, nesting bounded at 1024) but one: an integer too large for 64 bits comes back
as a float, so ``2**70`` would be stored as ``1.1805916207174113e21`` without a word.
Such a text has twenty digits in a row somewhere; only then is it decoded again with the
standard library, keeping integers whole, so the value domain refuses them by name.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{20}")


class Undecodable(ValueError):
    """Not JSON, or JSON statesync does not take (the message says why)."""


def decode(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Undecodable(str(exc)) from None
    if _LONG_DIGITS.search(raw) is None:
        return value
    try:
        return json.loads(raw)  # orjson has accepted it: it is valid, strict JSON
    except RecursionError:
        raise Undecodable("nested too deeply") from None
