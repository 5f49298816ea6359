// `node --import ./register.mjs`: the client in clients/js has no node_modules of its own;
// the packages it imports (graphql-ws, react) resolve from this project's, as a bundler
// resolves them from the app's.
import { register } from "node:module";

register("./resolve.mjs", import.meta.url);
