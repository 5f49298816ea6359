# The JavaScript client, shipped inside the Python package as statesync._client so that
# every statesync server can serve it at /client/ (see pyproject.toml and statesync/web.py).
