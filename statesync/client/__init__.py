"""An async Python client for statesync: queries, exactly-once commits, resumable watches.

    async with Client("http://127.0.0.1:8000") as client:
        order = await client.create("Order", {"customer": "ann", "items": []}, id="o1")
        await client.update("Order", "o1", {"note": "ring twice"}, expected_version=order.version)
        async for change in client.watch("Order", id="o1", fields="status note"):
            print(change.op, change.version, change.document)  # SNAPSHOT, then every change

Field names are the GraphQL ones (camelCase) everywhere: in inputs, patches, ``where``,
``fields`` and the documents returned. Every commit carries a ``mutationId`` (a new UUID
unless given) and is retried with it on transport failures, so it applies exactly once.
A GraphQL error raises :class:`StatesyncClientError` and is never retried.
"""

from statesync.client.core import Client
from statesync.client.protocol import Change, CommitResult, EmitResult, StatesyncClientError

__all__ = ["Change", "Client", "CommitResult", "EmitResult", "StatesyncClientError"]
