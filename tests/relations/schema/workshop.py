"""Test-only models that refer to each other in every way a reference may be declared.

- ``Part.supplier``: top level, nullable, cleared when the supplier goes (set_null);
- ``Supplier.favorite``: back to ``Part``, so the two refer to each other in a circle;
- ``Assembly.lines[].part``: inside a list of embedded values; a part in use cannot be
  deleted (restrict, the default);
- ``Assembly.labels``: a list of ids; a deleted label is taken out of it (set_null);
- ``Note.assembly``: by name, declared before its target; notes go with it (cascade).

Anonymous readers may not read a supplier's margin, nor see the label named "secret".
"""

from __future__ import annotations

import statesync as ss

EVERYONE = [ss.allow("anonymous", read=True)]


@ss.model(access=[ss.allow("anonymous", read=True, fields=["name", "favorite"])])
class Supplier:
    name: str
    favorite: str | None = ss.ref("Part", on_delete="set_null", default=None)
    secret_margin: int = 0


@ss.model(access=EVERYONE)
class Part:
    name: str
    price_cents: int
    supplier: str | None = ss.ref(Supplier, on_delete="set_null", default=None)


@ss.model(access=[ss.allow("anonymous", read={"name": {"ne": "secret"}})])
class Label:
    name: str


@ss.value
class Line:
    part: str = ss.ref(Part)
    qty: int = 1


@ss.model(access=EVERYONE)
class Note:
    text: str
    assembly: str = ss.ref("Assembly", on_delete="cascade")


@ss.model(access=EVERYONE)
class Assembly:
    title: str
    lines: list[Line] = ss.field(default_factory=list)
    labels: list[str] = ss.ref(Label, on_delete="set_null", default_factory=list)


# Under access control (tests/relations/test_reference_rules.py): a member's lockers are
# their own; pointers are everyone's, and may point at a locker.
MEMBER_OWNS = {"owner": {"eq": ss.session.user_id}}


@ss.model(access=[ss.allow("member", read=MEMBER_OWNS, create=["secret"],
                           update=["secret"], presets={"owner": ss.session.user_id})])
class Locker:
    owner: str
    secret: str


@ss.model(access=[ss.allow("member", read=True, create=True, update=True)])
class Pointer:
    title: str
    locker: str | None = ss.ref(Locker, on_delete="set_null", default=None)


# Tasks nest under tasks, and go with their parent; a pin keeps its task (restrict).
@ss.model(access=EVERYONE)
class Task:
    title: str
    parent: str | None = ss.ref("Task", on_delete="cascade", default=None)


@ss.model(access=EVERYONE)
class Pin:
    task: str = ss.ref(Task)
