import { register } from "node:module";

register("./resolve-vendored.mjs", import.meta.url);
