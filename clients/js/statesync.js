// statesync's browser client: UI state bound to subscriptions, no client-side store.
//
//   import { createStatesync } from "/client/statesync.js";
//   const sync = createStatesync({ url: "/graphql", getToken: () => auth.currentToken() });
//   sync.watch({ model: "Order", id: "o1", fields: "status totalCents" },
//              (order) => { el.textContent = order ? order.status : "gone"; });
//   await sync.update("Order", "o1", { note: "gift" }, { expectedVersion: "current" });
//
// What it keeps for you:
// - `confirmed` documents per watch, fed by the subscription (snapshot, then deltas applied
//   by version, so a replayed or late message never moves a document backwards);
// - `pending` commits, applied on top of what you see (optimistic) until the server answers.
//   A commit answered with an error is dropped, so the view falls back to the server's
//   document (for CONFLICT, the one the error carries);
// - the cursor of every watch, so a reconnect or a reload resubscribes with `since` and gets
//   exactly what it missed. Pending commits and watch caches live in `storage` (IndexedDB by
//   default, see durable.js), one queue per origin and `user`: it survives closing the
//   browser, and every tab of that user shares it. One tab (the leader, see tabs.js) sends
//   it; the others hear each new commit and each answer. A commit replayed after a lost
//   answer is applied once, because it keeps its mutationId.
//
// The protocol is the reference `graphql-ws` client; this module only does the bookkeeping.

import { createClient } from "graphql-ws";

import { openStore } from "./durable.js";
import { Tabs } from "./tabs.js";

export { memoryStore, storageStore } from "./durable.js";

const RESYNC = "RESYNC";
const REMOVALS = new Set(["DELETED", "EXPIRED", "REMOVED"]);

export class StatesyncError extends Error {
  constructor(code, message, extensions = {}) {
    super(message);
    this.name = "StatesyncError";
    this.code = code;
    this.extensions = extensions;
  }
}

// Same rule as the server's generated schema (statesync/models.py).
export function pluralize(name) {
  if (name.endsWith("y") && !"aeiou".includes(name.at(-2) ?? "a")) return name.slice(0, -1) + "ies";
  if (/(s|x|z|ch|sh)$/.test(name)) return name + "es";
  return name + "s";
}

const lowerFirst = (name) => name[0].toLowerCase() + name.slice(1);

export function jitteredDelay(attempt, baseMs = 250, maxMs = 10_000) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

const CHANGE_FIELDS = "op cursor id version changedFields mutationId hasMore via { model id }";

function subscriptionFor(spec) {
  const selection = `id version ${spec.fields}`;
  const body = `${CHANGE_FIELDS} document { ${selection} } documents { ${selection} }`;
  if (spec.id !== undefined) {
    const field = spec.field ?? lowerFirst(spec.model);
    return `subscription($id: ID!, $since: String) { ${field}(id: $id, since: $since) { ${body} } }`;
  }
  const field = spec.field ?? pluralize(lowerFirst(spec.model));
  return `subscription($where: ${spec.model}Where, $since: String) ` +
    `{ ${field}(where: $where, since: $since) { ${body} } }`;
}

function mutationFor(model, op, fields) {
  const result = `op id version replayed eventIds changedFields resolution { strategy basedOn applied kept } document { id version ${fields} }`;
  if (op === "create") {
    return `mutation($input: ${model}Input!, $id: ID, $mutationId: ID) ` +
      `{ result: create${model}(input: $input, id: $id, mutationId: $mutationId) { ${result} } }`;
  }
  if (op === "update") {
    return `mutation($id: ID!, $patch: ${model}Patch!, $expectedVersion: Int, $mutationId: ID) ` +
      `{ result: update${model}(id: $id, patch: $patch, expectedVersion: $expectedVersion, ` +
      `mutationId: $mutationId) { ${result} } }`;
  }
  return `mutation($id: ID!, $expectedVersion: Int, $mutationId: ID) ` +
    `{ result: delete${model}(id: $id, expectedVersion: $expectedVersion, mutationId: $mutationId) ` +
    `{ ${result} } }`;
}

const EVENT_SUBSCRIPTION = `subscription($id: ID!) { event(id: $id) {
  id type settled deliveries { handler status attempts lastError } } }`;

// Documents one watch has confirmed from the server, applied by version.
class Confirmed {
  constructor() {
    this.docs = new Map();
    this.removedAt = new Map(); // id -> version it was removed at; refuses late upserts
  }
  // `through`: the frame re-renders the same version because a document it shows through
  // a reference changed (the server's `via`), so the same version is news.
  upsert(doc, { through = false } = {}) {
    const current = this.docs.get(doc.id);
    const removed = this.removedAt.get(doc.id);
    if (current && (current.version > doc.version || (current.version === doc.version && !through))) {
      return false;
    }
    if (removed !== undefined && removed >= doc.version) return false;
    this.docs.set(doc.id, doc);
    this.removedAt.delete(doc.id);
    return true;
  }
  remove(id, version) {
    const current = this.docs.get(id);
    if (current && version !== null && version !== undefined && current.version > version) return false;
    this.docs.delete(id);
    const at = version ?? Number.MAX_SAFE_INTEGER;
    this.removedAt.set(id, Math.max(this.removedAt.get(id) ?? at, at));
    return true;
  }
  replace(docs) {
    this.docs = new Map(docs.map((doc) => [doc.id, doc]));
    this.removedAt.clear();
  }
}

// What the server makes of a patch (statesync/documents.py patched): each field it names
// takes its value, except an embedded object, which takes the fields the patch names and
// keeps the others, recursively; a list (of values or of objects) and a JSON field are
// replaced whole. An embedded object is what the watch selects with fields of its own
// (`shipping { city street }`): a JSON field cannot have a selection.
function patched(doc, patch, shape) {
  const out = { ...doc };
  for (const [key, value] of Object.entries(patch)) {
    const inner = shape?.[key];
    const before = doc?.[key];
    out[key] = inner && isObject(value) && isObject(before) ? patched(before, value, inner) : value;
  }
  return out;
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// `note shipping { city street } items { sku }` as { note: null, shipping: { city: null, ... } }.
function selectionShape(fields) {
  const root = {};
  const open = [root];
  let last = null;
  for (const token of fields.match(/[{}]|[^\s{}]+/g) ?? []) {
    if (token === "{") {
      const inner = {};
      if (last !== null) open.at(-1)[last] = inner;
      open.push(inner);
      last = null;
    } else if (token === "}") {
      if (open.length > 1) open.pop();
      last = null;
    } else {
      last = token.replace(/^.*:/, ""); // an alias names the field after its colon
      open.at(-1)[last] = null;
    }
  }
  return root;
}

// Pending commits on top of confirmed documents: what the user sees.
function overlay(docs, pending, watch) {
  const view = new Map(docs);
  for (const commit of pending) {
    if (commit.model !== watch.model) continue;
    if (watch.id !== undefined && commit.id !== watch.id) continue;
    const current = view.get(commit.id);
    if (commit.op === "delete") {
      view.delete(commit.id);
    } else if (commit.op === "update") {
      if (current) view.set(commit.id, { ...patched(current, commit.input, watch.shape), pending: true });
    } else if (!current && (watch.id !== undefined || watch.match(commit.input))) {
      view.set(commit.id, { ...commit.input, id: commit.id, version: 0, pending: true });
    }
  }
  return view;
}

class Watch {
  constructor(client, spec, onValue) {
    this.client = client;
    this.model = spec.model;
    this.id = spec.id;
    this.fields = spec.fields ?? "";
    this.shape = selectionShape(this.fields);
    this.sort = spec.sort ?? ((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // Optimistic creates can only show where we can tell they belong: everywhere in an
    // unfiltered collection, or where the caller's `match` says so.
    this.match = spec.match ?? (() => spec.where === undefined || spec.where === null);
    this.onValue = onValue;
    this.confirmed = new Confirmed();
    this.snapshot = null; // documents of a snapshot still arriving in chunks
    this.storageKey = `watch:${JSON.stringify([spec.model, spec.id ?? null, spec.where ?? null, this.fields])}`;
    // graphql-ws sends this same object again when it resubscribes after a reconnect, so
    // keeping `since` current in it is what makes a reconnect resume instead of restart.
    this.payload = { query: subscriptionFor(spec), variables: { since: null } };
    if (spec.id !== undefined) this.payload.variables.id = spec.id;
    else if (spec.where) this.payload.variables.where = spec.where;
    this.ready = false;
    this.resumed = false;
    this.closed = false;
    this.shown = undefined; // the value onValue last had: the same object until it changes
  }

  // The cache first (it holds the cursor to resume from), then the subscription.
  async start() {
    const cached = await this.client.store.read(this.storageKey);
    if (this.closed) return;
    if (cached) {
      this.confirmed.replace(cached.docs);
      this.payload.variables.since = cached.cursor;
      this.ready = true;
      this.resumed = true;
      this.emit();
    }
    this.subscribe();
  }

  subscribe() {
    this.stop = this.client.subscribeRaw(this.payload, {
      next: (result) => this.receive(result),
      error: (error) => this.failed(error),
    });
  }

  receive(result) {
    if (result.errors?.length || !result.data) return this.failed(result.errors ?? []);
    const change = Object.values(result.data)[0];
    if (change.op === RESYNC) return this.restart();
    if (change.op === "SNAPSHOT") {
      // Chunks of a snapshot cut off by a reconnect must not mix with the next snapshot's.
      if (this.snapshot?.cursor !== change.cursor) this.snapshot = { cursor: change.cursor, docs: [] };
      this.snapshot.docs.push(...(change.documents ?? (change.document ? [change.document] : [])));
      if (change.hasMore) return;
      this.confirmed.replace(this.snapshot.docs);
      this.snapshot = null;
      this.ready = true;
    } else if (REMOVALS.has(change.op)) {
      this.confirmed.remove(change.id, change.version);
    } else if (change.document) {
      this.confirmed.upsert(change.document, { through: Boolean(change.via) });
    }
    this.payload.variables.since = change.cursor;
    this.client.store.schedule(this.storageKey, () => ({
      cursor: this.payload.variables.since, docs: [...this.confirmed.docs.values()],
    }));
    this.emit();
  }

  failed(errors) {
    const list = Array.isArray(errors) ? errors : [errors];
    if (list.some((e) => e?.extensions?.code === "INVALID_CURSOR")) return this.restart();
    this.client.emitter.emit("error", { watch: this, errors: list });
  }

  // The server cannot replay what we missed: start over from a fresh snapshot.
  restart() {
    this.stop?.();
    this.payload.variables.since = null;
    this.snapshot = null;
    this.resumed = false;
    this.subscribe();
  }

  apply(doc, fields) {
    if (this.id !== undefined && doc.id !== this.id) return;
    // An answer selected with fewer fields than this watch shows would blank the rest.
    if (fields !== null && !fields.includes(this.fields)) return;
    if (this.id === undefined && !this.confirmed.docs.has(doc.id) && !this.match(doc)) return;
    if (this.confirmed.upsert(doc)) this.emit();
  }

  removeConfirmed(id, version) {
    if (this.confirmed.remove(id, version)) this.emit();
  }

  // What the user sees now; the very object last shown while nothing in it changed, so a
  // view can compare by identity (React's useSyncExternalStore requires it).
  get value() {
    const view = overlay(this.confirmed.docs, this.client.pending, this);
    const fresh = this.id !== undefined ? view.get(this.id) ?? null : [...view.values()].sort(this.sort);
    return this.shown !== undefined && sameValue(fresh, this.shown) ? this.shown : fresh;
  }

  // Once per distinct value: a replayed frame, a commit answered with what was already
  // shown, or a cursor that moved over other documents calls nobody.
  emit() {
    if (!this.ready) return;
    const value = this.value;
    if (value === this.shown) return;
    this.shown = value;
    guarded(() => this.onValue(value, { resumed: this.resumed, cursor: this.payload.variables.since }));
  }

  close() {
    this.closed = true;
    this.stop?.();
    this.client.watches.delete(this);
    this.client.store.remove(this.storageKey);
  }
}

// What the client keeps across reloads and restarts, over one backend of durable.js.
class Store {
  constructor(opening) {
    this.backend = null;
    this.ready = opening.then((backend) => { this.backend = backend; return backend; });
    this.chain = this.ready;
    this.dirty = new Map();
  }
  // Writes, and the reads that must see them, run one after another in this tab.
  serial(work) {
    const run = this.chain.then(work);
    this.chain = run.catch(() => {});
    return run;
  }
  read(key) { return this.serial(() => this.backend.get(key)).catch((error) => warned("read", key, error, null)); }
  entries(prefix) { return this.serial(() => this.backend.entries(prefix)); }
  // A full or unavailable storage costs durability, never the session.
  write(changes) {
    return this.serial(() => this.backend.write(changes)).then(() => true,
      (error) => warned("save", changes.put?.map(([k]) => k) ?? changes.del, error, false));
  }
  // Watches write on every change; coalesce bursts into one write per key per tick.
  schedule(key, produce) {
    if (!this.dirty.size) setTimeout(() => this.flush(), 0);
    this.dirty.set(key, produce);
  }
  remove(key) {
    this.dirty.delete(key);
    return this.write({ del: [key] });
  }
  flush() {
    const put = [...this.dirty].map(([key, produce]) => [key, produce()]);
    this.dirty.clear();
    return put.length ? this.write({ put }) : this.chain;
  }
}

function warned(what, key, error, value) {
  console.warn(`statesync: could not ${what}`, key, error);
  return value;
}

class Emitter {
  constructor() { this.listeners = new Map(); }
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name).delete(fn);
  }
  emit(name, value) { for (const fn of this.listeners.get(name) ?? []) guarded(() => fn(value)); }
}

// A throwing callback of the caller's must not break the client's own bookkeeping.
function guarded(fn) {
  try {
    fn();
  } catch (error) {
    console.error("statesync: a callback threw", error);
  }
}

const newId = () => globalThis.crypto.randomUUID();
const MAX_REBASES = 5;
const QUEUE = "queue:"; // the store's key prefix of queued commits
const byKey = (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

function answerError(answer) {
  return answer.errors?.[0] ?? (answer.data?.result ? undefined
    : { message: "the answer has no result", extensions: { code: "BAD_RESPONSE" } });
}

// JSON equality that ignores key order (the server and a selection may order keys differently).
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical(value[k])]));
  }
  return value;
}
const sameJson = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
const sameDoc = (a, b) => a === b || (a !== null && b !== null && sameJson(a, b));
const sameValue = (a, b) => (Array.isArray(a) && Array.isArray(b)
  ? a.length === b.length && a.every((doc, i) => sameDoc(doc, b[i]))
  : !Array.isArray(a) && !Array.isArray(b) && sameDoc(a, b));

export class Statesync {
  constructor({
    url = "/graphql", wsUrl, storage, storageKey = "statesync", user,
    fetch: fetchImpl = globalThis.fetch?.bind(globalThis), webSocketImpl, connectionParams,
    getToken, adminSecret, role, locks, BroadcastChannel: Channel,
  } = {}) {
    const base = globalThis.location?.href;
    this.url = new URL(url, base).toString();
    this.wsUrl = wsUrl ?? this.url.replace(/^http/, "ws");
    this.fetch = fetchImpl;
    this.webSocketImpl = webSocketImpl;
    // Credentials: `getToken()` (sync or async) is asked before every request and every
    // connection, so it can hand out a fresh token; the server closes a socket whose token
    // expired (4403) and graphql-ws reconnects, asking again.
    this.getToken = getToken;
    this.staticHeaders = {
      ...(adminSecret ? { "x-statesync-admin-secret": adminSecret } : {}),
      ...(role ? { "x-statesync-role": role } : {}),
    };
    this.connectionParams = connectionParams ?? (async () => ({ headers: await this.credentials() }));
    // One queue and one cache per origin and user: a page signed in as someone else must
    // never send the commits another user queued.
    this.namespace = user === undefined || user === null ? storageKey : `${storageKey}:${user}`;
    this.store = new Store(openStore(storage, this.namespace));
    this.emitter = new Emitter();
    this.watches = new Set();
    this.subscriptions = new Set(); // { payload, sink, stop }
    this.pending = []; // the queue, oldest first: every tab's commits when tabs share it
    this.unsaved = new Set(); // keys of this tab's commits not yet in the store
    this.settled = new Set(); // mutationIds answered (here or in another tab): never again
    this.waiters = new Map(); // mutationId -> { resolve, reject }: this tab's own commits
    this.outcomes = new Map(); // mutationId -> version it committed, for commits built on it
    this.tabId = newId().slice(0, 8);
    this.commitCount = 0;
    this.lastKeyTime = 0;
    this.queueCount = 0;
    this.tabs = null;
    this.leading = false;
    this.loaded = this.store.ready.then((backend) => this.joinTabs(backend, { locks, Channel }));
    this.online = true;
    this.flushing = false;
    this.retryAttempt = 0;
    this.retryTimer = null;
    this.status = "connecting";
    this.closed = false;
    this.connect();
    // A browser that loses its network says so; treat it like the caller's setOnline.
    this.onBrowserOffline = () => this.setOnline(false);
    this.onBrowserOnline = () => this.setOnline(true);
    globalThis.addEventListener?.("offline", this.onBrowserOffline);
    globalThis.addEventListener?.("online", this.onBrowserOnline);
  }

  on(name, fn) { return this.emitter.on(name, fn); }

  /** The headers that say who this client is, at this moment. */
  async credentials() {
    const token = this.getToken ? await this.getToken() : null;
    return { ...this.staticHeaders, ...(token ? { authorization: `Bearer ${token}` } : {}) };
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emitter.emit("status", status);
  }

  connect() {
    // A disposed client (after setOnline(false)) can still report a retry or a late close;
    // only the current one may change the status or feed the watches.
    let client = null; // createClient may report "connecting" before it returns
    const current = () => client !== null && client === this.ws;
    client = createClient({
      url: this.wsUrl,
      webSocketImpl: this.webSocketImpl,
      connectionParams: this.connectionParams,
      lazy: false,
      retryAttempts: Infinity,
      shouldRetry: () => true,
      retryWait: (attempt) => new Promise((resolve) => setTimeout(resolve, jitteredDelay(attempt))),
      keepAlive: 10_000,
      on: {
        connecting: () => { if (current()) this.setStatus("connecting"); },
        connected: () => { if (current()) { this.setStatus("online"); this.flush(); } },
        closed: () => { if (current() && this.online) this.setStatus("connecting"); },
      },
    });
    this.ws = client;
    this.setStatus("connecting");
    for (const subscription of this.subscriptions) this.attach(subscription);
  }

  // Subscribe on the current connection, and again on any later one (see setOnline).
  subscribeRaw(payload, sink) {
    const subscription = { payload, sink, stop: null };
    this.subscriptions.add(subscription);
    this.attach(subscription);
    return () => { subscription.stop(); this.subscriptions.delete(subscription); };
  }

  attach(subscription) {
    const ws = this.ws;
    if (ws === null) { // offline: connect() attaches it
      subscription.stop = () => {};
      return;
    }
    subscription.stop = ws.subscribe(subscription.payload, {
      next: (result) => { if (ws === this.ws) subscription.sink.next(result); },
      error: (error) => {
        if (ws !== this.ws) return;
        this.subscriptions.delete(subscription); // a watch that restarts subscribes anew
        subscription.sink.error(error);
      },
      // The server completed it (an event settled). Disposing a connection to go offline
      // completes everything too; those must be attached again when back online.
      complete: () => { if (ws === this.ws && this.online) this.subscriptions.delete(subscription); },
    });
  }

  /** Go offline (close the socket, queue commits) or back online (reconnect, resume, replay). */
  setOnline(online) {
    if (online === this.online || this.closed) return;
    this.online = online;
    if (!online) {
      this.ws.dispose();
      this.ws = null; // what the disposed client still reports is stale from now on
      this.setStatus("offline");
      return;
    }
    this.connect();
  }

  /** Bind `onValue` to a document ({model, id}) or a collection ({model, where}). */
  watch(spec, onValue) {
    const watch = new Watch(this, spec, onValue);
    this.watches.add(watch);
    watch.start();
    return watch;
  }

  /** Follow an event a commit caused until every handler has finished with it. */
  watchEvent(eventId, onEvent) {
    return this.subscribeRaw({ query: EVENT_SUBSCRIPTION, variables: { id: eventId } }, {
      next: (result) => { if (result.data) onEvent(result.data.event); },
      error: (error) => this.emitter.emit("error", { event: eventId, errors: [error] }),
    });
  }

  create(model, input, { id = newId(), fields } = {}) {
    return this.commit({ op: "create", model, id, input, fields });
  }

  /**
   * Change some fields. `expectedVersion: "current"` means "as I see it now": the commit
   * fails with CONFLICT only if a field it changes was changed by someone else meanwhile;
   * changes to other fields (a worker's status, say) are rebased over.
   */
  update(model, id, patch, { expectedVersion, fields } = {}) {
    return this.commitBasedOn({ op: "update", model, id, input: patch, fields }, expectedVersion, patch);
  }

  /** Delete; with `expectedVersion: "current"`, only if nobody changed it since it was seen. */
  delete(model, id, { expectedVersion, fields } = {}) {
    return this.commitBasedOn({ op: "delete", model, id, fields }, expectedVersion);
  }

  commitBasedOn(request, expectedVersion, patch) {
    let based;
    try {
      based = this.basedOn(request.model, request.id, expectedVersion, patch);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.commit({ ...request, ...based });
  }

  basedOn(model, id, expectedVersion, patch) {
    if (expectedVersion !== "current") return { expectedVersion: expectedVersion ?? null };
    const seen = this.visible(model, id);
    if (!seen) throw new StatesyncError("NOT_WATCHED", `no watch shows ${model} ${id}; pass a version number`);
    const base = patch ? Object.fromEntries(Object.keys(patch).map((k) => [k, seen[k] ?? null])) : null;
    // Seen through one of our own pending commits: its version is known once it is answered.
    const own = this.pending.findLast((c) => c.model === model && c.id === id);
    if (own) return { expectedVersion: null, after: own.mutationId, base };
    return { expectedVersion: seen.version, base };
  }

  visible(model, id) {
    for (const watch of this.watches) {
      if (watch.model !== model) continue;
      const value = watch.value;
      const doc = Array.isArray(value) ? value.find((d) => d.id === id) : value;
      if (doc && doc.id === id) return doc;
    }
    return null;
  }

  // ---- the queue ------------------------------------------------------------------------------
  //
  // The store holds the queue, one record per commit, keyed in commit order; every tab's
  // `pending` mirrors it. Any tab adds its own commits; only the leader sends them and
  // changes or removes records. An answer is broadcast before its record is removed, so a
  // leader that dies in between leaves a record the other tabs already know is settled.

  async joinTabs(backend, { locks, Channel }) {
    if (this.closed) return;
    const options = { locks, BroadcastChannel: Channel };
    if (backend.shared && Tabs.available(options)) {
      this.tabs = new Tabs(`statesync:${this.namespace}`, {
        ...options, onLead: () => this.lead(), onMessage: (message) => this.heard(message),
      });
      await this.reloadQueue();
      return;
    }
    if (backend.shared) console.warn("statesync: no Web Locks here; this tab sends the shared queue on its own");
    await this.reloadQueue();
    this.leading = true; // alone with its queue
    this.flush();
  }

  // The previous leader may have left records it did not get to update: read them afresh.
  async lead() {
    await this.reloadQueue({ trustMemory: false, owner: true });
    this.leading = !this.closed;
    this.flush();
  }

  heard(message) {
    if (message.type === "answer") this.settle(message.commit, message.answer);
    else if (message.type === "queue") this.reloadQueue().then(() => this.flush());
  }

  reloadQueue({ trustMemory = this.leading, owner = this.leading } = {}) {
    return this.store.entries(QUEUE).then((records) => this.mirror(records, { trustMemory, owner }),
                                          (error) => warned("read", QUEUE, error));
  }

  // Only the leader (the owner of the records) changes them, so its own copies are newer
  // than what it reads back, and it removes those answered already.
  mirror(records, { trustMemory, owner }) {
    const mine = new Map(this.pending.map((commit) => [commit.key, commit]));
    const queue = new Map();
    const stale = [];
    for (const [key, record] of records) {
      if (this.settled.has(record.mutationId)) stale.push(key);
      else queue.set(key, (trustMemory && mine.get(key)) || this.resolveAfter(record));
    }
    for (const key of this.unsaved) if (mine.has(key)) queue.set(key, mine.get(key));
    const models = new Set([...this.pending, ...queue.values()].map((commit) => commit.model));
    this.pending = [...queue.values()].sort(byKey);
    if (stale.length && owner) this.store.write({ del: stale });
    this.queueChanged();
    for (const model of models) this.render(model);
  }

  // A record built on a commit that was answered before its leader could say so in the store.
  resolveAfter(commit) {
    if (commit.after && this.outcomes.has(commit.after)) {
      commit.expectedVersion = this.outcomes.get(commit.after);
      delete commit.after;
    }
    return commit;
  }

  commit(request) {
    const commit = {
      key: this.nextKey(), mutationId: newId(), ...request,
      fields: request.fields ?? this.fieldsOf(request.model),
    };
    this.pending.push(commit);
    this.pending.sort(byKey);
    this.unsaved.add(commit.key);
    this.queueChanged();
    this.render(commit.model);
    const answered = new Promise((resolve, reject) => this.waiters.set(commit.mutationId, { resolve, reject }));
    this.store.write({ put: [[commit.key, commit]] }).then((saved) => {
      // Not saved (storage full): it stays in this tab's memory, sent only if this tab leads.
      if (saved) this.unsaved.delete(commit.key);
      this.tabs?.post({ type: "queue" });
      this.flush();
    });
    return answered;
  }

  // Keys sort in the order commits were made: by time across tabs, by count within one.
  nextKey() {
    this.lastKeyTime = Math.max(Date.now(), this.lastKeyTime);
    this.commitCount += 1;
    const time = String(this.lastKeyTime).padStart(15, "0");
    return `${QUEUE}${time}:${String(this.commitCount).padStart(9, "0")}:${this.tabId}`;
  }

  fieldsOf(model) {
    // Identical selections merge in GraphQL, so every watch's fields can simply be joined.
    return [...this.watches].filter((w) => w.model === model).map((w) => w.fields).join(" ");
  }

  queueChanged() {
    if (this.pending.length === this.queueCount) return;
    this.queueCount = this.pending.length;
    this.emitter.emit("queue", this.queueCount);
  }

  // Send pending commits one at a time, in order: a later edit may build on an earlier one.
  async flush() {
    if (this.flushing || !this.online || this.closed || !this.leading) return;
    this.flushing = true;
    try {
      for (;;) {
        const commit = this.pending[0];
        if (!commit || !this.online || !this.leading || this.closed) return;
        let answer;
        try {
          answer = await this.send(commit);
        } catch (transportError) {
          this.retryLater();
          return;
        }
        // Closed meanwhile: the next leader sends the same mutationId, which the server answers once.
        if (this.closed) return;
        await this.answered(commit, answer);
      }
    } finally {
      this.flushing = false;
    }
  }

  retryLater() {
    clearTimeout(this.retryTimer);
    this.retryAttempt += 1;
    this.retryTimer = setTimeout(() => this.flush(), jitteredDelay(this.retryAttempt));
  }

  async send(commit) {
    const variables = { id: commit.id, mutationId: commit.mutationId };
    if (commit.op === "create") variables.input = commit.input;
    if (commit.op === "update") variables.patch = commit.input;
    if (commit.op !== "create") variables.expectedVersion = commit.expectedVersion;
    const response = await this.fetch(this.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json",
                 ...(await this.credentials()) },
      body: JSON.stringify({ query: mutationFor(commit.model, commit.op, commit.fields ?? ""), variables }),
    });
    const body = await response.json().catch(() => null);
    if (body && (body.data || body.errors?.length)) {
      this.retryAttempt = 0;
      return body;
    }
    // Not GraphQL: a proxy, a gateway, an auth layer. Server trouble and throttling may
    // pass; any other client error will not, so it refuses the commit.
    if (response.status >= 500 || response.status === 429 || response.status === 408) {
      throw new Error(`HTTP ${response.status}`);
    }
    this.retryAttempt = 0;
    return { errors: [{ message: `HTTP ${response.status} with no GraphQL answer`,
                        extensions: { code: "HTTP_ERROR", status: response.status } }] };
  }

  async answered(commit, answer) {
    if (this.settled.has(commit.mutationId)) return;
    const error = answerError(answer);
    if (error && this.rebase(commit, error)) {
      // Still first in line, sent again with the new expectedVersion.
      await this.store.write({ put: [[commit.key, commit]] });
      this.tabs?.post({ type: "queue" });
      return;
    }
    this.tabs?.post({ type: "answer", commit, answer });
    await this.store.write(this.settle(commit, answer));
    this.tabs?.post({ type: "queue" });
  }

  /**
   * Apply a final answer, once per tab however often it arrives: the leader's own, or one
   * broadcast by the leader. Returns what the leader must change in the store.
   */
  settle(commit, answer) {
    if (this.settled.has(commit.mutationId)) return {};
    this.settled.add(commit.mutationId);
    this.pending = this.pending.filter((c) => c.mutationId !== commit.mutationId);
    const error = answerError(answer);
    const { put = [], del = [] } = error ? this.refused(commit, error) : this.accepted(commit, answer.data.result);
    this.queueChanged();
    return { put, del: [commit.key, ...del] };
  }

  refused(commit, error) {
    const code = error.extensions?.code ?? "INTERNAL_SERVER_ERROR";
    // Commits built on this one were made against a state the server refused.
    const dropped = this.dropDependents(commit.mutationId);
    if (error.extensions?.current) this.confirm(commit.model, error.extensions.current, null);
    this.render(commit.model);
    const failure = new StatesyncError(code, error.message, error.extensions ?? {});
    this.emitter.emit(code === "CONFLICT" ? "conflict" : "rejected", { commit, error: failure, dropped });
    this.rejectWaiter(commit, failure);
    for (const other of dropped) this.rejectWaiter(other, failure);
    return { del: dropped.map((c) => c.key) };
  }

  accepted(commit, result) {
    this.outcomes.set(commit.mutationId, result.version);
    const put = [];
    for (const later of this.pending) {
      if (later.after !== commit.mutationId) continue;
      later.expectedVersion = result.version;
      delete later.after;
      put.push([later.key, later]);
    }
    if (REMOVALS.has(result.op)) this.removeConfirmed(commit.model, result.id, result.version);
    else if (result.document) this.confirm(commit.model, result.document, commit.fields ?? "");
    this.render(commit.model);
    this.emitter.emit("committed", { commit, result });
    if (result.resolution) this.emitter.emit("resolved", { commit, result, resolution: result.resolution });
    this.waiters.get(commit.mutationId)?.resolve(result);
    this.waiters.delete(commit.mutationId);
    return { put };
  }

  // A CONFLICT where every field we change still holds what we based the change on: only
  // other fields moved, so apply ours on top of the server's version. Never over a model's
  // conflict strategy: a CONFLICT that names one is the server's answer, not a guess to redo
  // (a model that merges answers with the merge instead of a CONFLICT).
  rebase(commit, error) {
    const current = error.extensions?.current;
    if (error.extensions?.code !== "CONFLICT" || error.extensions?.strategy) return false;
    if (!commit.base || !current) return false;
    if ((commit.rebases ?? 0) >= MAX_REBASES) return false;
    const unchanged = Object.entries(commit.base).every(([k, v]) => sameJson(current[k] ?? null, v));
    if (!unchanged) return false;
    commit.expectedVersion = current.version;
    commit.rebases = (commit.rebases ?? 0) + 1;
    this.confirm(commit.model, current, null);
    return true;
  }

  dropDependents(mutationId) {
    const dropped = [];
    const parents = new Set([mutationId]);
    this.pending = this.pending.filter((c) => {
      if (!c.after || !parents.has(c.after)) return true;
      dropped.push(c);
      parents.add(c.mutationId);
      this.settled.add(c.mutationId);
      return false;
    });
    return dropped;
  }

  rejectWaiter(commit, error) {
    this.waiters.get(commit.mutationId)?.reject(error);
    this.waiters.delete(commit.mutationId);
  }

  /** `fields`: the selection `doc` was read with; null for a whole document. */
  confirm(model, doc, fields) { for (const w of this.watches) if (w.model === model) w.apply(doc, fields); }

  removeConfirmed(model, id, version) {
    for (const w of this.watches) if (w.model === model) w.removeConfirmed(id, version);
  }

  render(model) { for (const w of this.watches) if (w.model === model) w.emit(); }

  /** Commits not yet answered by the server (queued offline, or in flight). */
  get queued() { return this.pending.map(({ mutationId, op, model, id }) => ({ mutationId, op, model, id })); }

  /** Resolves once everything this client has queued or cached so far is in its storage. */
  async saved() {
    await this.loaded;
    await this.store.flush();
    await this.store.chain;
  }

  /**
   * Stop everything. Watches' caches are dropped; queued commits stay in the store for the
   * next client of the same user (another tab leads from now on, if one is open).
   */
  close() {
    this.closed = true;
    this.leading = false;
    globalThis.removeEventListener?.("offline", this.onBrowserOffline);
    globalThis.removeEventListener?.("online", this.onBrowserOnline);
    for (const watch of [...this.watches]) watch.close();
    this.store.flush();
    clearTimeout(this.retryTimer);
    this.ws?.dispose();
    this.loaded.then(() => this.tabs?.close());
  }
}

export function createStatesync(options) {
  return new Statesync(options);
}
