# statesync: one image for every role of the self-hosted deployment (compose.yaml):
#   statesync serve | migrate | relay | worker | beat
# PostgreSQL and Redis are external (STATESYNC_DATABASE_URL, STATESYNC_REDIS_URL);
# nothing in this image starts an embedded server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package first (its own layer: dependencies change less often than models/handlers).
# Its wheel carries statesync's own migrations (migrations/ becomes statesync/_migrations)
# and the JS client the API serves (clients/js/ becomes statesync/_client).
COPY pyproject.toml README.md ./
COPY statesync/ ./statesync/
COPY migrations/ ./migrations/
COPY clients/js/ ./clients/js/
RUN pip install . \
    && rm -rf build statesync.egg-info \
    && python -c 'from statesync.migrate import MIGRATIONS; assert (MIGRATIONS / "env.py").is_file(), MIGRATIONS' \
    && python -c 'from statesync.web import CLIENT_DIR; assert (CLIENT_DIR / "statesync.js").is_file(), CLIENT_DIR'

# The deployment: models and handlers.
COPY schema/ ./schema/
COPY workers/ ./workers/

# Non-root; the only writable place is the data folder (Celery beat's schedule file).
RUN groupadd --system statesync \
    && useradd --system --gid statesync --home-dir /var/lib/statesync --create-home statesync
USER statesync

ENV STATESYNC_HOST=0.0.0.0 \
    STATESYNC_PORT=8000 \
    STATESYNC_DATA_DIR=/var/lib/statesync \
    STATESYNC_SCHEMA_PATH=/app/schema \
    STATESYNC_WORKERS_PATH=/app/workers

EXPOSE 8000

# For the API (the default command). Other roles have no HTTP port: compose.yaml gives
# them their own check or disables this one. No curl in slim, so Python does the GET.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STATESYNC_PORT', '8000'), timeout=4).status == 200 else 1)"]

CMD ["statesync", "serve"]
