"""The names of statesync's Celery tasks and the shape of their arguments, named once:
the relay sends them, the Celery app registers them."""

DELIVER = "statesync.deliver"  # args: [event id, handler name]
DELIVER_MANY = "statesync.deliver_many"  # args: [[[event id, handler name], ...]]
# Deliveries sent together in one task at most: Celery's own cost per task (its broker
# round trips, the pool's pipe) shared among them. A bundle runs one after the other in
# one worker process, so bundles are only made of a dispatch big enough to keep
# SPREAD tasks at least (a backlog, whose tasks outnumber the workers' slots anyway):
# a handful of due deliveries still goes one per task, side by side.
BUNDLE = 8
SPREAD = 32


def bundle_size(due: int) -> int:
    """How many deliveries to a task, for a dispatch of ``due`` unordered ones."""
    return max(1, min(BUNDLE, due // SPREAD))
SWEEP = "statesync.sweep_expired"
PRUNE = "statesync.prune"
