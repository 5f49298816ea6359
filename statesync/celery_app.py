"""The Celery command line's entry: ``celery -A statesync.celery_app worker`` (or ``beat``).

The one module that builds a Celery app when imported, from the environment's
``STATESYNC_*`` settings; everything else builds its own with
:func:`statesync.eventing.celery_app.create_celery`.
"""

from statesync.config import Settings
from statesync.eventing.celery_app import create_celery

app = create_celery(Settings())
