// React bindings: a component reads a document or a collection the server keeps, and renders
// again when it changes. No store of your own; the client's watch is the store.
//
//   import { StatesyncProvider, useDocument, useCollection } from "@statesync/client/react";
//
//   <StatesyncProvider client={sync}><Board /></StatesyncProvider>
//
//   function OrderRow({ id }) {
//     const order = useDocument("Order", id, { fields: "status totalCents" });
//     if (order === undefined) return "loading";
//     return order === null ? "gone" : `${order.status}: ${order.totalCents}`;
//   }
//
// Each hook is `useSyncExternalStore` over one watch: opened when the first component that
// asks for it mounts, closed when the last one unmounts. It returns `undefined` until the
// first snapshot, then the watch's value (with pending commits on top), which keeps its
// identity until something in it changes, so memoized children do not re-render for nothing.

import { createContext, createElement, useContext, useMemo, useSyncExternalStore } from "react";

const StatesyncContext = createContext(null);

/** Makes `client` (a `createStatesync(...)`) the one the hooks below use. */
export function StatesyncProvider({ client, children }) {
  return createElement(StatesyncContext.Provider, { value: client }, children);
}

/** The client of the nearest StatesyncProvider. */
export function useStatesync() {
  const client = useContext(StatesyncContext);
  if (client === null) throw new Error("statesync: wrap the component in <StatesyncProvider client={...}>");
  return client;
}

// One watch shared by whoever subscribes to this store. React subscribes before it reads a
// changed snapshot, and StrictMode subscribes, unsubscribes and subscribes again: the watch
// survives that because only the last unsubscribe closes it, and a later subscribe reopens it.
function watchStore(client, spec) {
  const listeners = new Set();
  let watch = null;
  let value;
  return {
    subscribe(listener) {
      listeners.add(listener);
      if (watch === null) {
        watch = client.watch(spec, (next) => {
          value = next;
          for (const notify of [...listeners]) notify();
        });
      }
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && watch !== null) {
          watch.close();
          watch = null;
        }
      };
    },
    getSnapshot: () => value,
  };
}

// What identifies a watch: a new object literal for the same spec on every render must not
// open a new one. `sort` and `match` are functions; the first render's are used.
const specKey = ({ model, id, where, fields }) => JSON.stringify([model, id ?? null, where ?? null, fields ?? ""]);

/** A watch's value: `{ model, id, fields }` or `{ model, where, fields, sort, match }`. */
export function useWatch(spec) {
  const client = useStatesync();
  const key = specKey(spec);
  // eslint-disable-next-line react-hooks/exhaustive-deps -- `key` stands for `spec`
  const store = useMemo(() => watchStore(client, spec), [client, key]);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** One document: `undefined` while loading, `null` if there is none (or it was deleted). */
export function useDocument(model, id, { fields } = {}) {
  return useWatch({ model, id, fields });
}

/** The documents matching `where` (all of the model without one), sorted; `undefined` while loading. */
export function useCollection(model, { where, fields, sort, match } = {}) {
  return useWatch({ model, where, fields, sort, match });
}
