// The reference graphql-sse client (distinct connections mode), with nothing
// statesync-specific: subscribe to a collection over server-sent events, commit a
// mutation over the same client, receive the change. Prints what it saw as one JSON line
// and exits 0, or exits 1 with the reason.
//
//   node sse_client.mjs http://127.0.0.1:8000/graphql
import { createClient } from "graphql-sse";

const [url] = process.argv.slice(2);
const client = createClient({ url, retryAttempts: 0 });
const fail = (reason) => { console.error(String(reason?.message ?? JSON.stringify(reason))); process.exit(1); };
setTimeout(() => fail("timed out waiting for the change"), 15_000).unref();

const seen = [];
const subscription = client.iterate({
  query: `subscription { products(where: { sku: { beginsWith: "sse-" } }) {
    op document { id sku name priceCents } documents { id } } }`,
});
try {
  for await (const result of subscription) {
    if (result.errors) fail(result.errors);
    const change = result.data.products;
    seen.push({ op: change.op, document: change.document, documents: change.documents });
    if (change.op === "SNAPSHOT") {
      const commit = await client.iterate({
        query: `mutation($input: ProductInput!) { createProduct(id: "sse-1", input: $input) { version } }`,
        variables: { input: { sku: "sse-1", name: "Over SSE", priceCents: 90 } },
      }).next();
      seen.push({ commit: commit.value });
    }
    if (change.op === "CREATED") break;
  }
} catch (error) {
  fail(error);
}
client.dispose();
console.log(JSON.stringify(seen));
