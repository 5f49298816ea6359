"""statesync: typed state documents in Postgres, committed through GraphQL, live over subscriptions."""

from statesync.access import allow, session
from statesync.models import field, model, value

__all__ = ["allow", "field", "model", "session", "value"]
