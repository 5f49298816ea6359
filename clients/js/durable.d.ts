// Types of durable.js: where the browser client keeps the queue and the watches' caches.

/** The interface every storage backend implements, under one namespace (origin and user). */
export interface DurableStore {
  get(key: string): Promise<unknown | null>;
  /** Every record whose key starts with `prefix`, sorted by key. */
  entries(prefix: string): Promise<Array<[string, unknown]>>;
  /** In one transaction where the backend has them. */
  write(changes: { put?: Array<[string, unknown]>; del?: string[] }): Promise<unknown>;
  /** True when every tab of the origin sees the same records (the tabs then coordinate). */
  readonly shared: boolean;
}

/** A backend by name, a `Storage` (sessionStorage, say), or a store of your own. */
export type StorageOption = "indexeddb" | "session" | "memory" | null | Storage | DurableStore;

export function storageStore(storage: Storage, namespace: string): DurableStore;
export function memoryStore(options?: { shared?: boolean; records?: Map<unknown, unknown> }): DurableStore;
export function indexedDbStore(
  namespace: string, options?: { indexedDB?: IDBFactory; name?: string },
): Promise<DurableStore | null>;
export function openStore(storage: StorageOption | undefined, namespace: string): Promise<DurableStore>;
