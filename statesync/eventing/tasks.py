"""The names of statesync's Celery tasks and the shape of their arguments, named once:
the relay sends them, the Celery app registers them."""

DELIVER = "statesync.deliver"  # args: [event id, handler name]
DELIVER_MANY = "statesync.deliver_many"  # args: [[[event id, handler name], ...]]
# Deliveries sent together in one task at most: Celery's own cost per task (its broker
# round trips, the pool's pipe) and the worker's statements shared among them. A bundle
# runs one after the other in one worker process, so bundles are only made where there
# is a backlog, whose tasks outnumber the workers' slots anyway: a dispatch big enough
# to keep SPREAD tasks at least, or one that would queue behind as many already waiting.
# A handful of due deliveries on an idle broker still goes one per task, side by side.
BUNDLE = 8
SPREAD = 32


def bundle_size(due: int, waiting: int = 0) -> int:
    """How many deliveries to a task, for a dispatch of ``due`` unordered ones while
    ``waiting`` tasks are queued before them."""
    return max(1, min(BUNDLE, (due + waiting) // SPREAD))
SWEEP = "statesync.sweep_expired"
PRUNE = "statesync.prune"
