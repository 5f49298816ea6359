"""Permission rules without a server (statesync.access): declared, bound, asked."""

from __future__ import annotations

import pytest

import statesync as ss
from statesync.access import NOTHING, ModelRules, allow, session
from statesync.errors import Forbidden, NotFound
from statesync.filters import FieldKind, matches
from statesync.identity import ADMIN, Identity, anonymous

KINDS = {"id": FieldKind.ID, "owner": FieldKind.STRING, "text": FieldKind.STRING,
         "org": FieldKind.STRING, "published": FieldKind.BOOL}
FIELDS = ["owner", "text", "org", "published"]


def rules(*permissions: ss.access.Permission) -> ModelRules:
    return ModelRules("Note", permissions, FIELDS, FIELDS, KINDS)


def user(name: str | None, role: str, **claims: str) -> Identity:
    return Identity(role=role, user_id=name, allowed_roles=frozenset({role}), claims=claims)


OWN = allow("author", read={"owner": {"eq": session.user_id}}, create=["text", "published"],
            update=["text"], delete=True, presets={"owner": session.user_id})


def test_a_row_rule_binds_session_values() -> None:
    ada = rules(OWN).bind(user("ada", "author"))
    assert ada.sees({"id": "1", "owner": "ada"}) and not ada.sees({"id": "2", "owner": "bob"})
    nobody = rules(OWN).bind(user(None, "author"))  # no user id: the rule matches nothing
    assert nobody.visible == NOTHING and not nobody.sees({"id": "1", "owner": None})
    assert nobody.creatable is None  # and it cannot create: the preset has no value


def test_claims_and_combinators() -> None:
    org = rules(allow("member", read={"or": [{"org": {"eq": session["org-id"]}},
                                            {"published": {"eq": True}}]}))
    acme = org.bind(user("m", "member", **{"org-id": "acme"}))
    assert acme.sees({"org": "acme", "published": False})
    assert acme.sees({"org": "globex", "published": True})
    assert not acme.sees({"org": "globex", "published": False})
    assert acme.visible is not None and matches(acme.visible, {"org": "acme"}, KINDS)


def test_no_rule_no_access_and_the_admin_needs_none() -> None:
    stranger = rules(OWN).bind(user("x", "reader"))
    assert not stranger.can_read and stranger.creatable is None and not stranger.can_delete
    assert ADMIN.is_admin and not anonymous("anonymous", "1.2.3.4").is_admin


def test_what_the_write_path_asks() -> None:
    ada = rules(OWN).bind(user("ada", "author"))
    assert ada.creating({"text": "t"}) == {"text": "t", "owner": "ada"}
    with pytest.raises(Forbidden) as refused:
        ada.creating({"text": "t", "owner": "bob"})
    assert refused.value.extensions["fields"] == ["owner"]
    with pytest.raises(Forbidden):
        ada.patching({"published": True})  # create may, update may not
    ada.patching({"text": "u"})
    with pytest.raises(NotFound):
        ada.existing({"id": "2", "owner": "bob"}, "2")
    with pytest.raises(Forbidden):
        ada.checked({"id": "3", "owner": "bob", "text": "t"})  # would leave her view
    ada.checked({"id": "3", "owner": "ada", "text": "t"})


def test_fields_and_redaction() -> None:
    reader = rules(allow("reader", read=True, fields=["text"])).bind(user("r", "reader"))
    assert reader.may_read_field("id") and reader.may_read_field("text")
    assert not reader.may_read_field("owner")
    assert reader.redact({"id": "1", "version": 2, "text": "t", "owner": "o"}) == {
        "id": "1", "version": 2, "text": "t"}
    assert reader.readable_of(["owner", "text"]) == ("text",)


@pytest.mark.parametrize(("permission", "message"), [
    (allow("a", read={"nope": {"eq": 1}}), "unknown field"),
    (allow("a", read={"owner": {"like": "x"}}), "unknown operator"),
    (allow("a", read={"owner": "ada"}), "takes {operator: value}"),
    (allow("a", fields=["nope"]), "unknown fields"),
    (allow("a", create=["nope"]), "unknown fields"),
    (allow("a", presets={"nope": 1}), "unknown fields"),
    (allow("a", read={"published": {"eq": "yes"}}), "not a valid bool"),
])
def test_declarations_are_checked(permission: ss.access.Permission, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        rules(permission)


def test_a_role_has_one_rule_per_model() -> None:
    with pytest.raises(TypeError, match="two allow"):
        rules(allow("a", read=True), allow("a", "b", read=False))


def test_fields_clients_may_not_write_cannot_be_granted() -> None:
    with pytest.raises(TypeError, match="clients may not write"):
        ModelRules("Note", [allow("a", update=["owner"])], FIELDS, ["text"], KINDS)


def test_identity_roles() -> None:
    both = Identity(role="author", user_id="ada", allowed_roles=frozenset({"author", "reader"}))
    assert both.acting_as("reader").role == "reader"
    with pytest.raises(Forbidden):
        both.acting_as("admin")
    assert ADMIN.acting_as("reader").role == "reader"
