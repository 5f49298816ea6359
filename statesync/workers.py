"""The public API for handler modules: ``from statesync.workers import handler``."""

from statesync.eventing.handlers import Event, Tx, handler

__all__ = ["Event", "Tx", "handler"]
