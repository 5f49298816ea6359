"""Eventing: the outbox relay, the delivery worker and its Celery app, the TTL sweep and
retention, and the handler API. The web app imports nothing from here but the
lifecycle's values (``lifecycle``)."""
