"""The names of statesync's Celery tasks and the shape of their arguments, named once:
the relay sends them, the Celery app registers them."""

DELIVER = "statesync.deliver"  # args: [event id, handler name]
SWEEP = "statesync.sweep_expired"
PRUNE = "statesync.prune"
