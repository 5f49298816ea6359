// The reference graphql-ws client, with nothing statesync-specific: subscribe to a
// collection, commit a mutation over plain HTTP, receive the change. Prints what it saw
// as one JSON line and exits 0, or exits 1 with the reason.
//
//   node reference_client.mjs http://127.0.0.1:8000/graphql
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [httpUrl] = process.argv.slice(2);
const client = createClient({ url: httpUrl.replace(/^http/, "ws"), webSocketImpl: WebSocket, lazy: true });
const fail = (reason) => { console.error(String(reason?.message ?? JSON.stringify(reason))); process.exit(1); };
setTimeout(() => fail("timed out waiting for the change"), 15_000).unref();

const seen = [];
const subscription = client.iterate({
  query: `subscription { products(where: { sku: { beginsWith: "node-" } }) {
    op cursor document { id sku name priceCents } documents { id } } }`,
});
try {
  for await (const result of subscription) {
    if (result.errors) fail(result.errors);
    const change = result.data.products;
    seen.push({ op: change.op, document: change.document, documents: change.documents });
    if (change.op === "SNAPSHOT") {
      const response = await fetch(httpUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          query: `mutation($input: ProductInput!) { createProduct(id: "node-1", input: $input) { version } }`,
          variables: { input: { sku: "node-1", name: "From Node", priceCents: 120 } },
        }),
      });
      seen.push({ commit: await response.json() });
    }
    if (change.op === "CREATED") break;
  }
} catch (error) {
  fail(error);
}
await client.dispose();
console.log(JSON.stringify(seen));
