// The client's bookkeeping against an in-memory server: run with `npm test` in clients/js
// (tests/unit/test_js_client.py runs it as part of the suite).
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { createStatesync, memoryStore } from "../statesync.js";
import { FakeServer, fakeBrowser, memoryStorage, until } from "./fake_server.js";

const clients = [];
afterEach(() => { while (clients.length) clients.pop().close(); });

function connect(server, storage = memoryStorage()) {
  const sync = createStatesync({ url: "http://fake/graphql", webSocketImpl: server.WebSocket,
                                 fetch: server.fetch, storage });
  clients.push(sync);
  return sync;
}

function watchAll(sync, options = {}) {
  const seen = { value: undefined };
  seen.watch = sync.watch({ model: "Order", fields: "note", ...options }, (value) => { seen.value = value; });
  return seen;
}

const doc = (id, version, note = "") => ({ id, version, note });
const ids = (value) => value.map((d) => `${d.id}@${d.version}`);
const committed = (op, document) => ({ status: 200, body: { data: { result: {
  op, id: document.id, version: document.version, replayed: false, eventIds: [], changedFields: [], document } } } });

test("a snapshot, then deltas applied by version: nothing moves backwards", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => {
    ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "5", documents: [doc("a", 2), doc("b", 1)] } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "6", id: "a", version: 3, document: doc("a", 3, "new") } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "6", id: "a", version: 2, document: doc("a", 2, "old") } });
    ws.next(m.id, { orders: { op: "REMOVED", cursor: "7", id: "b", version: 2 } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "7", id: "b", version: 1, document: doc("b", 1) } });
  };
  const seen = watchAll(connect(server));
  await until(() => seen.value?.length === 1 && seen.value[0].version === 3, "a@3 alone");
  assert.deepEqual(seen.value, [doc("a", 3, "new")]);
});

test("a change seen through a reference updates the same version; a plain repeat does not", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => {
    ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "5", documents: [doc("a", 2, "bolt 10c")] } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "6", id: "a", version: 2, via: { model: "Part", id: "bolt" },
                              document: doc("a", 2, "bolt 12c") } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "6", id: "a", version: 2, via: null,
                              document: doc("a", 2, "stale") } });
    ws.next(m.id, { orders: { op: "CREATED", cursor: "7", id: "b", version: 1, document: doc("b", 1) } });
  };
  const seen = watchAll(connect(server));
  await until(() => seen.value?.length === 2, "b, after everything else");
  assert.deepEqual(seen.value, [doc("a", 2, "bolt 12c"), doc("b", 1)]);
  assert.match(server.subscribes()[0].payload.query, /via \{ model id \}/);
});

test("the callback fires once per distinct value, and the value keeps its identity while unchanged", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => {
    ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "5", documents: [doc("a", 2, "x")] } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "6", id: "a", version: 2, document: doc("a", 2, "x") } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "7", id: "a", version: 1, document: doc("a", 1, "old") } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "8", id: "a", version: 3, via: { model: "Part", id: "p" },
                              document: doc("a", 3, "x") } });
    ws.next(m.id, { orders: { op: "UPDATED", cursor: "9", id: "a", version: 4, document: doc("a", 4, "y") } });
  };
  const sync = connect(server);
  const calls = [];
  const watch = sync.watch({ model: "Order", fields: "note" }, (value, { cursor }) => calls.push([value, cursor]));
  await until(() => calls.at(-1)?.[1] === "9", "the last change");
  // The snapshot, then v3 (a new version, same note), then v4: the repeat and the stale v1 call nobody.
  assert.deepEqual(calls.map(([value]) => ids(value)), [["a@2"], ["a@3"], ["a@4"]]);
  assert.equal(watch.value, calls.at(-1)[0]);
  assert.equal(watch.value, watch.value);
});

test("a snapshot cut off by a reconnect does not mix with the next one", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => {
    if (server.subscribes().length === 1) {
      ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "10", documents: [doc("a", 1), doc("ghost", 1)], hasMore: true } });
      setTimeout(() => ws.drop(), 2);
    } else {
      ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "12", documents: [doc("a", 1), doc("b", 1)] } });
    }
  };
  const seen = watchAll(connect(server));
  await until(() => seen.value, "a snapshot");
  assert.deepEqual(ids(seen.value), ["a@1", "b@1"]);
  assert.equal(server.subscribes()[1].payload.variables.since, null); // no cursor yet to resume from
});

test("a reconnect resubscribes with since; RESYNC starts over from a snapshot", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => {
    const n = server.subscribes().length;
    if (n === 1) {
      ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "3", documents: [doc("a", 1)] } });
      ws.next(m.id, { orders: { op: "CREATED", cursor: "4", id: "b", version: 1, document: doc("b", 1) } });
      setTimeout(() => ws.drop(), 2);
    } else if (n === 2) {
      ws.next(m.id, { orders: { op: "RESYNC", cursor: "4" } });
    } else {
      ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "9", documents: [doc("c", 1)] } });
    }
  };
  const seen = watchAll(connect(server));
  await until(() => seen.value?.[0]?.id === "c", "the fresh snapshot");
  assert.deepEqual(server.subscribes().map((m) => m.payload.variables.since), [null, "4", null]);
  assert.deepEqual(ids(seen.value), ["c@1"]);
});

test("an optimistic edit shows at once; a CONFLICT rolls back to the server's document", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [doc("a", 1, "v1")] } });
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  server.answer = async () => {
    await held;
    return { status: 200, body: { data: null, errors: [{ message: "stale", extensions: {
      code: "CONFLICT", current: { ...doc("a", 2, "theirs"), customer: "x" } } }] } };
  };
  const sync = connect(server);
  const seen = watchAll(sync);
  await until(() => seen.value, "the snapshot");
  const conflicts = [];
  sync.on("conflict", (e) => conflicts.push(e));
  const first = sync.update("Order", "a", { note: "mine" }, { expectedVersion: "current" });
  const second = sync.update("Order", "a", { note: "mine again" }, { expectedVersion: "current" });
  assert.equal(seen.value[0].note, "mine again");
  assert.equal(seen.value[0].pending, true);
  release();
  await assert.rejects(first, { code: "CONFLICT" });
  await assert.rejects(second, { code: "CONFLICT" }); // built on the refused one
  assert.deepEqual(seen.value.map((d) => [d.id, d.version, d.note, d.pending]), [["a", 2, "theirs", undefined]]);
  assert.equal(conflicts.length, 1);
  assert.equal(server.requests.length, 1);
});

test("a CONFLICT on fields the edit does not touch is rebased and sent again", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [doc("a", 1, "v1")] } });
  server.answer = (body) => (server.requests.length === 1
    ? { status: 200, body: { data: null, errors: [{ message: "stale", extensions: {
        code: "CONFLICT", current: { ...doc("a", 2, "v1"), status: "PRICED" } } }] } }
    : committed("UPDATED", doc("a", 3, body.variables.patch.note)));
  const sync = connect(server);
  const seen = watchAll(sync);
  await until(() => seen.value, "the snapshot");
  const result = await sync.update("Order", "a", { note: "mine" }, { expectedVersion: "current" });
  const [first, second] = server.requests;
  assert.equal(result.version, 3);
  assert.deepEqual([first.variables.expectedVersion, second.variables.expectedVersion], [1, 2]);
  assert.equal(first.variables.mutationId, second.variables.mutationId);
  assert.deepEqual(seen.value, [doc("a", 3, "mine")]);
});

test("a CONFLICT a model's conflict strategy answered is not rebased over", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [doc("a", 1, "v1")] } });
  server.answer = () => ({ status: 200, body: { data: null, errors: [{ message: "outbid", extensions: {
    code: "CONFLICT", strategy: "custom", current: { ...doc("a", 2, "v1"), status: "PRICED" } } }] } });
  const sync = connect(server);
  const seen = watchAll(sync);
  await until(() => seen.value, "the snapshot");
  await assert.rejects(sync.update("Order", "a", { note: "mine" }, { expectedVersion: "current" }),
                       { code: "CONFLICT" });
  assert.equal(server.requests.length, 1); // the same edit against version 2 would pass the resolver by
});

test("offline commits queue, survive a reload, and replay in order with their mutation ids", async () => {
  const server = new FakeServer();
  let version = 1;
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: String(version),
                                                             documents: [doc("a", version)] } });
  const storage = memoryStorage();
  const sync = connect(server, storage);
  const seen = watchAll(sync);
  await until(() => sync.status === "online" && seen.value, "online, with the snapshot");
  const statuses = [];
  sync.on("status", (s) => statuses.push(s));
  sync.setOnline(false);
  sync.update("Order", "a", { note: "one" }).catch(() => {});
  sync.update("Order", "a", { note: "two" }).catch(() => {});
  assert.equal(seen.value[0].note, "two");
  assert.equal(server.requests.length, 0);
  const queued = sync.queued.map((c) => c.mutationId);

  // The page reloads while offline: a new client on the same storage (the old one stays inert).
  server.answer = (body) => committed("UPDATED", doc("a", ++version, body.variables.patch.note));
  const reloaded = connect(server, storage);
  const again = watchAll(reloaded);
  await until(() => server.requests.length === 2 && reloaded.queued.length === 0, "the replay");
  assert.deepEqual(server.requests.map((r) => r.variables.mutationId), queued);
  assert.deepEqual(server.requests.map((r) => r.variables.patch.note), ["one", "two"]);
  await until(() => again.value?.[0]?.version === 3, "the answers applied");
  assert.deepEqual(statuses, ["offline"]); // the disposed connection said nothing more
});

test("a lost answer is sent again with the same mutation id; a 401 is refused", async () => {
  const server = new FakeServer();
  server.answer = () => (server.requests.length === 1 ? { fail: true }
    : server.requests.length === 2 ? committed("CREATED", doc("n", 1)) : { status: 401, body: { detail: "no" } });
  const sync = connect(server);
  const created = await sync.create("Order", { note: "x" }, { id: "n" });
  assert.equal(created.version, 1);
  assert.equal(server.requests[0].variables.mutationId, server.requests[1].variables.mutationId);
  await assert.rejects(sync.delete("Order", "n"), { code: "HTTP_ERROR" });
  assert.equal(sync.queued.length, 0);
});

test("a full storage costs the cache, never the commit", async () => {
  const server = new FakeServer();
  server.answer = () => committed("CREATED", doc("n", 1));
  const sync = connect(server, memoryStorage(10));
  const created = await sync.create("Order", { note: "x".repeat(100) }, { id: "n" });
  assert.equal(created.id, "n");
  assert.equal(server.requests.length, 1);
});

test("credentials go with every request and connection; a token expiring on the socket is renewed", async () => {
  const server = new FakeServer();
  let issued = 0;
  const sync = createStatesync({ url: "http://fake/graphql", webSocketImpl: server.WebSocket,
                                 fetch: server.fetch, storage: memoryStorage(), role: "customer",
                                 getToken: async () => `token-${++issued}` });
  clients.push(sync);
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [] } });
  server.answer = (body) => committed("CREATED", { id: body.variables.id, version: 1 });
  const seen = watchAll(sync);
  await until(() => Array.isArray(seen.value), "the snapshot");
  const init = server.socket.sent.find((m) => m.type === "connection_init");
  assert.deepEqual(init.payload, { headers: { "x-statesync-role": "customer", authorization: "Bearer token-1" } });
  await sync.create("Order", { note: "x" }, { id: "o1" });
  assert.equal(server.headers.at(-1).authorization, "Bearer token-2");
  assert.equal(server.headers.at(-1)["x-statesync-role"], "customer");
  server.socket.close(4403, "Forbidden: the token has expired"); // graphql-ws retries 4403
  await until(() => server.sockets.length === 2 && server.socket.sent.some((m) => m.type === "subscribe"),
              "a new connection, subscribed again");
  const again = server.socket.sent.find((m) => m.type === "connection_init");
  assert.match(again.payload.headers.authorization, /^Bearer token-[3-9]$/);
});

// ---- the durable queue, shared by the tabs of one browser ---------------------------------

// A tab of `browser` whose durable store holds `records` (IndexedDB, in a browser).
function tab(server, browser, records, options = {}) {
  const sync = createStatesync({ url: "http://fake/graphql", webSocketImpl: server.WebSocket,
                                 fetch: server.fetch, user: "ada", ...browser,
                                 storage: memoryStore({ shared: true, records }), ...options });
  clients.push(sync);
  return sync;
}

const sentIds = (server) => server.requests.map((r) => r.variables.mutationId);

test("queued commits survive closing the browser and replay once, in order", async () => {
  const server = new FakeServer();
  server.answer = (body) => committed("CREATED", doc(body.variables.id, 1, body.variables.input.note));
  const records = new Map();
  const before = tab(server, fakeBrowser(), records);
  await until(() => before.leading, "the only tab leading");
  before.setOnline(false);
  for (const note of ["one", "two", "three"]) before.create("Order", { note }, { id: note }).catch(() => {});
  const queued = before.queued.map((c) => c.mutationId);
  await before.saved();

  // The browser is gone (its lock and channels with it); a new one opens the same records.
  server.answer = (body) => committed("CREATED", doc(body.variables.id, 1, body.variables.input.note));
  const after = tab(server, fakeBrowser(), records);
  assert.equal(after.queued.length, 0); // nothing read yet: the store is asynchronous
  await until(() => server.requests.length === 3 && after.queued.length === 0, "the replay");
  assert.deepEqual(sentIds(server), queued);
  assert.deepEqual(server.requests.map((r) => r.variables.input.note), ["one", "two", "three"]);
  await until(() => records.size === 0, "the answered commits removed from the store");
});

test("one tab sends the shared queue; a follower's commit settles with the leader's answer", async () => {
  const server = new FakeServer();
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  server.answer = async (body) => {
    await held;
    return { status: 200, body: { data: { result: {
      op: "CREATED", id: body.variables.id, version: 1, replayed: false, eventIds: [], changedFields: ["note"],
      resolution: { strategy: "merge", basedOn: 0, applied: ["note"], kept: [] }, document: doc(body.variables.id, 1, "f") } } } };
  };
  const browser = fakeBrowser();
  const records = new Map();
  const leader = tab(server, browser, records);
  await until(() => leader.leading, "the first tab leading");
  const follower = tab(server, browser, records);
  await follower.loaded;
  const counts = { leader: [], follower: [] };
  leader.on("queue", (n) => counts.leader.push(n));
  follower.on("queue", (n) => counts.follower.push(n));
  const resolved = [];
  follower.on("resolved", (e) => resolved.push(e.resolution));

  const created = follower.create("Order", { note: "f" }, { id: "f1" });
  await until(() => leader.queued.length === 1 && server.requests.length === 1, "the leader sending it");
  assert.equal(follower.leading, false);
  assert.deepEqual(leader.queued, follower.queued);
  release();
  const result = await created;
  assert.equal(result.version, 1);
  await until(() => leader.queued.length === 0 && follower.queued.length === 0, "both queues empty");
  assert.deepEqual(counts, { leader: [1, 0], follower: [1, 0] });
  assert.deepEqual(resolved, [{ strategy: "merge", basedOn: 0, applied: ["note"], kept: [] }]);
  assert.equal(server.requests.length, 1);
});

test("a tab taking over from a closed leader sends what is left, never what was answered", async () => {
  const server = new FakeServer();
  server.answer = (body) => committed("CREATED", doc(body.variables.id, 1));
  const browser = fakeBrowser();
  const records = new Map();
  // The leader is closed after broadcasting its first answer and before removing the record.
  const dying = memoryStore({ shared: true, records });
  const write = dying.write;
  dying.write = (changes) => (changes.del?.length ? new Promise(() => {}) : write(changes));
  const leader = tab(server, browser, records, { storage: dying });
  await until(() => leader.leading, "the first tab leading");
  const follower = tab(server, browser, records);
  await follower.loaded;
  const committedIds = [];
  follower.on("committed", ({ commit }) => committedIds.push(commit.id));

  const first = await follower.create("Order", { note: "x" }, { id: "c1" });
  assert.equal(first.version, 1);
  const second = follower.create("Order", { note: "y" }, { id: "c2" });
  await until(() => records.size === 2, "both commits in the store");
  assert.equal(server.requests.length, 1); // the leader is stuck removing c1

  leader.close();
  assert.equal((await second).id, "c2");
  assert.equal(follower.leading, true);
  assert.deepEqual(server.requests.map((r) => r.variables.id), ["c1", "c2"]);
  assert.deepEqual(committedIds, ["c1", "c2"]);
  await until(() => records.size === 0, "the store emptied by the new leader");
});

test("a patch changes only the fields it names in an embedded object, as the server does", async () => {
  const server = new FakeServer();
  const shipped = { ...doc("a", 1, "keep"), shipping: { city: "Paris", street: "rue Oberkampf", geo: { lat: 1, lon: 2 } },
                    items: [{ sku: "x", qty: 1 }], extra: { a: 1, b: 2 } };
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [shipped] } });
  const sync = connect(server);
  const seen = watchAll(sync, { fields: "note shipping { city street geo { lat lon } } items { sku qty } extra" });
  await until(() => seen.value, "the snapshot");
  sync.setOnline(false);
  sync.update("Order", "a", { shipping: { city: "Lyon", geo: { lat: 9 } }, items: [{ sku: "y", qty: 2 }], extra: { a: 5 } })
    .catch(() => {});
  assert.deepEqual(seen.value[0], {
    id: "a", version: 1, note: "keep", pending: true,
    shipping: { city: "Lyon", street: "rue Oberkampf", geo: { lat: 9, lon: 2 } }, // merged
    items: [{ sku: "y", qty: 2 }], // a list: replaced
    extra: { a: 5 }, // a JSON field (no selection of its own): replaced
  });
});

test("a follower's commit the server refuses rolls back in every tab and rejects where it was made", async () => {
  const server = new FakeServer();
  server.onSubscribe = (ws, m) => ws.next(m.id, { orders: { op: "SNAPSHOT", cursor: "1", documents: [doc("a", 1, "v1")] } });
  server.answer = () => ({ status: 200, body: { data: null, errors: [{ message: "stale", extensions: {
    code: "CONFLICT", current: doc("a", 2, "theirs") } }] } });
  const browser = fakeBrowser();
  const records = new Map();
  const leader = tab(server, browser, records);
  await until(() => leader.leading, "the first tab leading");
  const follower = tab(server, browser, records);
  const views = [watchAll(leader), watchAll(follower)];
  await until(() => views.every((v) => v.value), "both snapshots");
  const conflicts = [];
  for (const sync of [leader, follower]) sync.on("conflict", ({ commit }) => conflicts.push(commit.mutationId));

  await assert.rejects(follower.update("Order", "a", { note: "mine" }, { expectedVersion: 1 }), { code: "CONFLICT" });
  await until(() => views.every((v) => v.value[0].version === 2), "both views on the server's document");
  assert.deepEqual(views.map((v) => v.value[0].note), ["theirs", "theirs"]);
  assert.equal(conflicts.length, 2);
  assert.equal(new Set(conflicts).size, 1); // one commit, heard once in each tab
  assert.equal(server.requests.length, 1);
});
