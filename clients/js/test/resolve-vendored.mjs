// Node resolves `graphql-ws` to the copy the server vendors, as the page's import map does.
export async function resolve(specifier, context, next) {
  if (specifier === "graphql-ws") {
    return next(new URL("../vendor/graphql-ws/client.js", import.meta.url).href, context);
  }
  return next(specifier, context);
}
