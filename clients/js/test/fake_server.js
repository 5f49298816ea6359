// An in-memory graphql-transport-ws server and GraphQL HTTP endpoint for the client's tests.
export class FakeServer {
  constructor() {
    this.sockets = [];
    this.requests = []; // parsed HTTP bodies, in order
    this.up = true;
    this.onSubscribe = () => {};
    this.answer = () => ({ status: 200, body: { data: null } });
    const server = this;
    this.WebSocket = class {
      static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
      constructor(url, protocol) {
        this.url = url; this.protocol = protocol; this.readyState = 0; this.sent = [];
        server.sockets.push(this);
        setTimeout(() => {
          if (!server.up) return this.drop();
          this.readyState = 1; this.onopen?.();
        }, 1);
      }
      send(raw) {
        const message = JSON.parse(raw);
        this.sent.push(message);
        if (message.type === "connection_init") setTimeout(() => this.deliver({ type: "connection_ack" }), 1);
        if (message.type === "subscribe") setTimeout(() => server.onSubscribe(this, message), 1);
      }
      deliver(message) { if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(message) }); }
      next(id, data) { this.deliver({ id, type: "next", payload: { data } }); }
      close(code = 1000, reason = "") {
        if (this.readyState >= 2) return;
        this.readyState = 2;
        setTimeout(() => { this.readyState = 3; this.onclose?.({ code, reason }); }, 1);
      }
      drop() { this.readyState = 3; this.onclose?.({ code: 1006, reason: "" }); }
    };
    this.headers = []; // the headers of each HTTP request, in order
    this.fetch = async (url, init) => {
      const body = JSON.parse(init.body);
      this.requests.push(body);
      this.headers.push(init.headers ?? {});
      const { status, body: answer, fail } = await this.answer(body);
      if (fail) throw new TypeError("Failed to fetch");
      return { status, json: async () => (typeof answer === "string" ? JSON.parse(answer) : answer) };
    };
  }
  get socket() { return this.sockets.at(-1); }
  subscribes() { return this.sockets.flatMap((s) => s.sent.filter((m) => m.type === "subscribe")); }
}

export function memoryStorage(limit = Infinity) {
  const items = new Map();
  return {
    items,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => {
      const others = [...items].reduce((n, [key, value]) => n + (key === k ? 0 : value.length), 0);
      if (others + v.length > limit) throw new Error("QuotaExceededError");
      items.set(k, v);
    },
    removeItem: (k) => items.delete(k),
    key: (i) => [...items.keys()][i] ?? null,
    get length() { return items.size; },
  };
}

// Wait until `check()` is truthy (re-checked every few ms), or fail after `ms`.
export async function until(check, what, ms = 2000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// Web Locks for tests: one holder per name; the next waiter is granted when it lets go.
// As in browsers, request() resolves to what the callback's promise resolves to.
export function fakeLocks() {
  const waiting = new Map(); // name -> [{ callback, resolve, reject }]
  const held = new Set();
  const grant = (name) => {
    const queue = waiting.get(name);
    if (held.has(name) || !queue?.length) return;
    held.add(name);
    const { callback, resolve, reject } = queue.shift();
    Promise.resolve().then(() => callback({ name, mode: "exclusive" })).then(resolve, reject)
      .finally(() => { held.delete(name); grant(name); });
  };
  return {
    request(name, callback) {
      if (!waiting.has(name)) waiting.set(name, []);
      return new Promise((resolve, reject) => {
        waiting.get(name).push({ callback, resolve, reject });
        grant(name);
      });
    },
  };
}

let browsers = 0;

// One browser's tabs: its own locks, and channels no other browser hears.
export function fakeBrowser() {
  const prefix = `browser-${++browsers}`;
  return {
    locks: fakeLocks(),
    BroadcastChannel: class extends BroadcastChannel {
      constructor(name) { super(`${prefix}:${name}`); }
    },
  };
}
