// Change -> subscriber, from Node: N websocket subscribers, one writer over HTTP.
// usage: node fanout.mjs <statesync|distinct|raw> <base url> <subscribers> <light|saturate|hold> <n> [secret]
//   light:    n changes, 5 per second, one at a time; latency = trigger sent -> each frame in
//   saturate: n seconds of triggers as fast as the server takes them; deliveries/s
//   hold:     open the subscribers, print {"open": n}, keep them until stdin closes (memory)
// distinct: statesync, but every subscriber's query is a different document (nothing shared).
// statesync: subscribers speak graphql-transport-ws to /graphql and watch one Order; the
// trigger is updateOrder. raw: subscribers connect to /ws; the trigger is POST /broadcast.
// Prints {p50, p99} (ms, trigger sent -> frame received; raw adds stamped_p50/p99 from its
// broadcast start) or {deliveries_per_s} as JSON.
import WebSocket from "ws";
import { randomUUID } from "node:crypto";

const [kind, base, nArg, mode, countArg, secret] = process.argv.slice(2);
const subscribers = Number(nArg), count = Number(countArg);
const headers = { "content-type": "application/json", ...(secret ? { "x-statesync-admin-secret": secret } : {}) };
const wsBase = base.replace(/^http/, "ws");
const id = `fan-${randomUUID().slice(0, 8)}`;
const sentAt = new Map(); // trigger number -> performance.now()
const delays = []; // trigger sent -> frame received, both kinds
const stampedDelays = []; // raw only: the server's broadcast start -> frame received
let delivered = 0;
let opened = 0;
const waiting = new Map(); // trigger number -> remaining receipts, resolve

async function post(path, body) {
  const response = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) });
  return response.json();
}

function received(n, stamped) {
  const t = sentAt.get(n);
  if (mode === "light" && t !== undefined) delays.push(performance.now() - t);
  if (mode === "light" && stamped !== undefined) stampedDelays.push(performance.timeOrigin + performance.now() - stamped);
  delivered += 1;
  const w = waiting.get(n);
  if (w && --w.left === 0) { waiting.delete(n); w.resolve(); }
}

function open() {
  return new Promise((resolve, reject) => {
    if (kind === "raw") {
      const ws = new WebSocket(`${wsBase}/ws`, { perMessageDeflate: false });
      ws.on("open", () => resolve(ws));
      ws.on("message", (data) => { const m = JSON.parse(data); received(m.n, m.t); });
      ws.on("error", reject);
      return;
    }
    const extra = kind === "distinct" ? ` v${opened++}: version` : "";
    const ws = new WebSocket(`${wsBase}/graphql`, "graphql-transport-ws", { perMessageDeflate: false });
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: secret ? { headers } : {} })));
    ws.on("message", (data) => {
      const m = JSON.parse(data);
      if (m.type === "connection_ack") {
        ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: {
          query: `subscription($id: ID!) { order(id: $id) { op${extra} document { note } } }`, variables: { id } } }));
      } else if (m.type === "next") {
        const change = m.payload.data.order;
        if (change.op === "SNAPSHOT") resolve(ws); else received(Number(change.document.note));
      } else if (m.type === "ping") ws.send('{"type":"pong"}');
      else if (m.type === "error") reject(new Error(JSON.stringify(m.payload)));
    });
    ws.on("error", reject);
  });
}

async function trigger(n) {
  sentAt.set(n, performance.now());
  if (kind === "raw") return post("/broadcast", { n });
  return post("/graphql", { query: "mutation($id: ID!, $note: String) { updateOrder(id: $id, patch: {note: $note}) { version } }",
                            variables: { id, note: String(n) } });
}

if (kind !== "raw") {
  await post("/graphql", { query: 'mutation($id: ID) { createOrder(id: $id, input: {customer: "fan", items: []}) { id } }', variables: { id } });
}
const sockets = [];
for (let i = 0; i < subscribers; i += 100) {
  sockets.push(...await Promise.all(Array.from({ length: Math.min(100, subscribers - i) }, open)));
}
let result;
if (mode === "hold") {
  console.log(JSON.stringify({ open: sockets.length }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  result = { closed: sockets.length };
} else if (mode === "light") {
  for (let n = 1; n <= count; n++) {
    const all = new Promise((resolve) => waiting.set(n, { left: subscribers, resolve }));
    await trigger(n);
    await all;
    await new Promise((r) => setTimeout(r, 200)); // 5 changes a second: light load
  }
  const at = (xs, q) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
  result = { p50: at(delays, 0.5), p99: at(delays, 0.99) };
  if (stampedDelays.length) Object.assign(result, { stamped_p50: at(stampedDelays, 0.5), stamped_p99: at(stampedDelays, 0.99) });
} else {
  const deadline = performance.now() + count * 1000;
  const started = performance.now();
  let n = 0;
  const writers = Array.from({ length: 4 }, async () => { while (performance.now() < deadline) await trigger(++n); });
  await Promise.all(writers);
  const expected = n * subscribers;
  const until = performance.now() + 30_000; // let the fan-out finish what was triggered
  while (delivered < expected && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  result = { deliveries_per_s: delivered / ((performance.now() - started) / 1000), triggers: n, delivered };
}
for (const ws of sockets) ws.terminate();
console.log(JSON.stringify(result));
