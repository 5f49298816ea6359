// Commits over HTTP from Node (not Python: the load generator must not be the bottleneck).
// usage: node commits.mjs <graphql url> <clients> <seconds> [admin secret]
// Each client updates its own Order (created first), every commit with a fresh mutationId,
// one request at a time; prints {rate, p50, p99} (ms) as JSON.
import { randomUUID } from "node:crypto";

const [url, clientsArg, secondsArg, secret] = process.argv.slice(2);
const clients = Number(clientsArg), seconds = Number(secondsArg);
const headers = { "content-type": "application/json", ...(secret ? { "x-statesync-admin-secret": secret } : {}) };
const UPDATE = "mutation($id: ID!, $note: String, $m: ID) { updateOrder(id: $id, patch: {note: $note}, mutationId: $m) { version } }";
const CREATE = 'mutation($id: ID) { createOrder(id: $id, input: {customer: "bench", items: [{sku: "tea", qty: 1}]}) { id } }';

async function post(query, variables) {
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body;
}

const run = randomUUID().slice(0, 8);
const ids = Array.from({ length: clients }, (_, n) => `bench-${run}-${n}`);
for (const id of ids) await post(CREATE, { id });
const latencies = [];
const deadline = performance.now() + seconds * 1000;
const started = performance.now();
await Promise.all(ids.map(async (id) => {
  let n = 0;
  while (performance.now() < deadline) {
    n += 1;
    const t = performance.now();
    await post(UPDATE, { id, note: String(n), m: randomUUID() });
    latencies.push(performance.now() - t);
  }
}));
const elapsed = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
console.log(JSON.stringify({ rate: latencies.length / elapsed, p50: at(0.5), p99: at(0.99) }));
