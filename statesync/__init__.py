"""statesync: typed state documents in Postgres, committed through GraphQL, live over subscriptions."""

from statesync.access import allow, session
from statesync.conflicts import Merge, Reject
from statesync.models import field, model, ref, value

__all__ = ["Merge", "Reject", "allow", "field", "model", "ref", "session", "value"]
