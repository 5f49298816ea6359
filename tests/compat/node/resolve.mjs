const CLIENT = new URL("../../../clients/js/", import.meta.url).href;
const HERE = new URL("./", import.meta.url).href;
const bare = (specifier) => !/^(\.|\/|[a-z]+:)/.test(specifier);

export async function resolve(specifier, context, next) {
  if (bare(specifier) && context.parentURL?.startsWith(CLIENT)) {
    return next(specifier, { ...context, parentURL: HERE });
  }
  return next(specifier, context);
}
