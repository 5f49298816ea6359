"""`statesync watch`: a subscription in a terminal, against a real server, read line by
line as a user's shell would."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from tests.conftest import ROOT, RunningServer
from tests.support import WAIT, GraphQLClient


async def watching(server: RunningServer, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESYNC_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "statesync", "watch", *args, "--url", server.base_url,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def line(process: asyncio.subprocess.Process) -> dict[str, object]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), WAIT)
    assert raw, (await process.stderr.read()).decode() if process.stderr else "no output"
    decoded: dict[str, object] = orjson.loads(raw)
    return decoded


async def test_a_document_is_printed_as_a_snapshot_then_each_change(
        server: RunningServer, client: GraphQLClient) -> None:
    process = await watching(server, "Order", "o1")
    try:
        # Subscribed before the order exists: the reader sees it created, then changed.
        snapshot = await line(process)
        assert snapshot["op"] == "SNAPSHOT" and "document" not in snapshot
        await client.data('mutation { createOrder(id: "o1", input: {customer: "ann", '
                          'items: [], note: "a"}) { version } }')
        created = await line(process)
        assert (created["op"], created["version"]) == ("CREATED", 1)
        document = created["document"]
        assert isinstance(document, dict)
        # Every plain field, chosen from the schema; none that needs a selection (items).
        assert {"customer", "note", "status", "totalCents", "expiresAt"} <= set(document)
        assert "items" not in document
        await client.data('mutation { updateOrder(id: "o1", patch: {note: "b"}) { version } }')
        updated = await line(process)
        assert (updated["op"], updated["changedFields"]) == ("UPDATED", ["note"])
    finally:
        process.terminate()
        await process.wait()


async def test_a_filtered_collection_with_chosen_fields(server: RunningServer,
                                                       client: GraphQLClient) -> None:
    process = await watching(server, "Order", "--where", '{"customer": {"eq": "bob"}}',
                             "--fields", "note")
    try:
        snapshot = await line(process)
        assert (snapshot["op"], snapshot["documents"]) == ("SNAPSHOT", [])
        await client.data('mutation { createOrder(id: "b1", input: {customer: "bob", '
                          'items: [], note: "hi"}) { version } }')
        created = await line(process)
        assert created["document"] == {"id": "b1", "version": 1, "note": "hi"}
    finally:
        process.terminate()
        await process.wait()


async def test_mistakes_are_named_with_a_status(server: RunningServer) -> None:
    unknown = await watching(server, "Nope", "x")
    _, err = await asyncio.wait_for(unknown.communicate(), WAIT)
    assert unknown.returncode == 1 and b"no model 'Nope'" in err
    not_json = await watching(server, "Order", "--where", "{customer")
    _, err = await asyncio.wait_for(not_json.communicate(), WAIT)
    assert not_json.returncode == 2 and b"--where is not JSON" in err
