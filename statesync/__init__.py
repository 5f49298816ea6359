"""statesync: typed state documents in Postgres, committed through GraphQL, live over subscriptions."""

from statesync.models import field, model, value

__all__ = ["field", "model", "value"]
