// graphql-http's own audit of a GraphQL over HTTP server (the spec's MUSTs and SHOULDs).
// Prints [{id, name, status, reason}] for every audit as one JSON line.
//
//   node http_audit.mjs http://127.0.0.1:8000/graphql
import { auditServer } from "graphql-http";

const [url] = process.argv.slice(2);
const results = await auditServer({ url });
console.log(JSON.stringify(results.map(({ id, name, status, reason }) => ({ id, name, status, reason }))));
