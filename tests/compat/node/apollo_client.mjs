// Apollo Client (3.x, in Node) against the API with nothing statesync-specific but the
// cache's type policies the README gives: automatic persisted queries, a subscription over
// Apollo's multipart HTTP protocol (HttpLink's own), and a normalized cache kept current by
// the subscription's frames and a mutation's answer, with a deleted document evicted.
// Prints what it saw as one JSON line and exits 0, or exits 1 with the reason.
//
//   node apollo_client.mjs http://127.0.0.1:8000/graphql apollo-1
import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";

const [httpUrl, id] = process.argv.slice(2);
const fail = (reason) => { console.error(String(reason?.stack ?? reason?.message ?? JSON.stringify(reason))); process.exit(1); };
const seen = { requests: [], watched: [], frames: [] };
setTimeout(() => fail(`timed out; saw ${JSON.stringify(seen)}`), 20_000).unref();

// What went over the wire: whether each request carried the query text or its hash alone.
const recordingFetch = (url, init) => {
  const body = JSON.parse(init.body);
  seen.requests.push({ operation: body.operationName, text: typeof body.query === "string",
                       hash: Boolean(body.extensions?.persistedQuery), accept: init.headers.accept });
  return fetch(url, init);
};
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const client = new ApolloClient({
  link: createPersistedQueryLink({ sha256 }).concat(new HttpLink({ uri: httpUrl, fetch: recordingFetch })),
  // Change and commit messages are not entities: only the documents in them are.
  cache: new InMemoryCache({ typePolicies: { ProductChange: { keyFields: false },
                                             ProductCommit: { keyFields: false } } }),
});

async function plain(query) { // another writer, not through Apollo
  const response = await fetch(httpUrl, { method: "POST", headers: { "content-type": "application/json" },
                                          body: JSON.stringify({ query }) });
  const body = await response.json();
  if (body.errors) fail(body.errors);
}
async function until(check, what) {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 10));
  return what;
}
const latest = () => seen.watched.at(-1);

try {
  await plain(`mutation { createProduct(id: "${id}", input: { sku: "${id}", name: "Bolt", priceCents: 5 }) { version } }`);
  const watched = client.watchQuery({
    query: gql`query Product($id: ID!) { product(id: $id) { id name priceCents } }`, variables: { id },
  }).subscribe({ next: ({ data }) => seen.watched.push(data.product), error: fail });
  await until(() => latest()?.name === "Bolt", "query");

  const live = client.subscribe({
    query: gql`subscription Live($id: ID!) { product(id: $id) { op id model version document { id name priceCents } } }`,
    variables: { id },
  }).subscribe({
    next: ({ data }) => {
      const change = data.product;
      seen.frames.push(change.op);
      if (change.op === "DELETED" || change.op === "EXPIRED") {
        client.cache.evict({ id: client.cache.identify({ __typename: change.model, id: change.id }) });
        client.cache.gc();
      }
    },
    error: fail,
  });
  await until(() => seen.frames.includes("SNAPSHOT"), "snapshot");

  await plain(`mutation { updateProduct(id: "${id}", patch: { priceCents: 9 }) { version } }`);
  await until(() => latest()?.priceCents === 9, "a change another writer made, through the subscription");

  await client.mutate({
    mutation: gql`mutation Rename($id: ID!) { updateProduct(id: $id, patch: { name: "Nut" }) {
      version document { id name priceCents } } }`,
    variables: { id },
  });
  await until(() => latest()?.name === "Nut", "the mutation's answer");
  await client.query({ query: gql`query Product($id: ID!) { product(id: $id) { id name priceCents } }`,
                       variables: { id }, fetchPolicy: "network-only" });

  await plain(`mutation { deleteProduct(id: "${id}") { version } }`);
  await until(() => seen.frames.includes("DELETED") && latest() === null, "the delete, evicted");
  seen.cached = Object.keys(client.cache.extract()).filter((key) => key.startsWith("Product:"));
  live.unsubscribe();
  watched.unsubscribe();
} catch (error) {
  fail(error);
}
console.log(JSON.stringify(seen));
process.exit(0);
