// The React bindings rendered into a DOM (jsdom) against the real server, through a
// commit, a change made by someone else, and a delete. Prints what the page showed after
// each step as one JSON line and exits 0, or exits 1 with the reason.
//
//   node --import ./register.mjs react_client.mjs http://127.0.0.1:8000/graphql react-1
import { JSDOM } from "jsdom";
import WebSocket from "ws";

const [httpUrl, id] = process.argv.slice(2);
const fail = (reason) => { console.error(String(reason?.stack ?? reason?.message ?? JSON.stringify(reason))); process.exit(1); };
setTimeout(() => fail(`timed out; the page shows ${JSON.stringify(text())}`), 20_000).unref();

const dom = new JSDOM("<!doctype html><div id=root></div>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.navigator ??= dom.window.navigator;
const errors = [];
const consoleError = console.error;
console.error = (...args) => { errors.push(args.map(String).join(" ")); consoleError(...args); };

const { createElement: h, memo, StrictMode } = await import("react");
const { createRoot } = await import("react-dom/client");
const { createStatesync } = await import("../../../clients/js/statesync.js");
const { StatesyncProvider, useCollection, useDocument } = await import("../../../clients/js/react.js");

const renders = { product: 0, rows: {} };
function Product() {
  renders.product += 1;
  const product = useDocument("Product", id, { fields: "name priceCents" });
  if (product === undefined) return h("p", { id: "product" }, "loading");
  if (product === null) return h("p", { id: "product" }, "gone");
  return h("p", { id: "product" }, `${product.name} at ${product.priceCents}`);
}
// Memoized on the document: a collection value that keeps unchanged documents' identity
// renders only the row that changed.
const Row = memo(function Row({ product }) {
  renders.rows[product.name] = (renders.rows[product.name] ?? 0) + 1;
  return h("li", null, product.name);
});
function Catalog() {
  const products = useCollection("Product", { where: { sku: { beginsWith: "react-" } }, fields: "name" });
  if (products === undefined) return h("ul", { id: "catalog" }, "loading");
  return h("ul", { id: "catalog" }, products.map((p) => h(Row, { key: p.id, product: p })));
}

async function graphql(query, variables) {
  const response = await fetch(httpUrl, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) fail(body.errors);
  return body.data;
}
const text = () => ({
  product: document.getElementById("product")?.textContent,
  catalog: document.getElementById("catalog")?.textContent,
});
async function until(check, what) {
  while (!check(text())) await new Promise((resolve) => setTimeout(resolve, 10));
  return { ...text(), what, renders: structuredClone(renders) };
}

await graphql(`mutation { createProduct(id: "react-0", input: { sku: "react-0", name: "Bolt", priceCents: 5 }) { version } }`);
const sync = createStatesync({ url: httpUrl, webSocketImpl: WebSocket, storage: "memory" });
const root = createRoot(document.getElementById("root"));
root.render(h(StrictMode, null, h(StatesyncProvider, { client: sync }, h(Product), h(Catalog))));

const seen = [];
try {
  seen.push(await until((t) => t.product === "gone" && t.catalog === "Bolt", "snapshot"));
  await sync.create("Product", { sku: id, name: "Nut", priceCents: 7 }, { id });
  seen.push(await until((t) => t.product === "Nut at 7" && t.catalog === "BoltNut", "own commit"));
  await graphql(`mutation($id: ID!) { updateProduct(id: $id, patch: { priceCents: 9 }) { version } }`, { id });
  seen.push(await until((t) => t.product === "Nut at 9", "someone else's change"));
  await graphql(`mutation($id: ID!) { deleteProduct(id: $id) { version } }`, { id });
  seen.push(await until((t) => t.product === "gone" && t.catalog === "Bolt", "delete"));
} catch (error) {
  fail(error);
}
root.unmount();
sync.close();
console.log(JSON.stringify({ seen, errors }));
process.exit(0);
