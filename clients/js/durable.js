// Where statesync's browser client keeps what must outlive the page: the commit queue and
// the watches' caches. Every backend is the same small async interface, under a namespace
// (one per origin and user):
//
//   get(key)                     -> value or null
//   entries(prefix)              -> [[key, value], ...] sorted by key
//   write({ put: [[key, value]], del: [key] })   in one transaction where the backend has them
//   shared                       -> true when every tab of the origin sees the same records
//
// `shared` is what decides whether the tabs must coordinate (see tabs.js): IndexedDB is
// shared and survives closing the browser; a tab's sessionStorage and memory are neither.

const RECORDS = "records";

function settle(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDatabase(indexedDB, name) {
  const opening = indexedDB.open(name, 1);
  opening.onupgradeneeded = () => opening.result.createObjectStore(RECORDS);
  return settle(opening).then((db) => {
    // Another tab upgrading the schema must not wait behind this one forever.
    db.onversionchange = () => db.close();
    return db;
  });
}

// Keys are [namespace, key] arrays: IndexedDB orders them element by element, so one
// user's records form one contiguous range whatever the user's name contains.
class IndexedDbStore {
  constructor(db, namespace) {
    this.db = db;
    this.namespace = namespace;
    this.shared = true;
  }

  transaction(mode, work) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(RECORDS, mode);
      const result = work(tx.objectStore(RECORDS));
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    });
  }

  async get(key) {
    const holder = {};
    await this.transaction("readonly", (records) => {
      records.get([this.namespace, key]).onsuccess = (e) => { holder.value = e.target.result; };
    });
    return holder.value ?? null;
  }

  async entries(prefix) {
    const range = IDBKeyRange.bound([this.namespace, prefix], [this.namespace, `${prefix}\uffff`]);
    const found = {};
    // Keys and values read in one transaction come in the same (key) order.
    await this.transaction("readonly", (records) => {
      records.getAllKeys(range).onsuccess = (e) => { found.keys = e.target.result; };
      records.getAll(range).onsuccess = (e) => { found.values = e.target.result; };
    });
    return found.keys.map((key, i) => [key[1], found.values[i]]);
  }

  write({ put = [], del = [] }) {
    return this.transaction("readwrite", (records) => {
      for (const key of del) records.delete([this.namespace, key]);
      for (const [key, value] of put) records.put(value, [this.namespace, key]);
    });
  }
}

/** A tab's `Storage` (sessionStorage, say), as JSON under `${namespace}:`. Not shared. */
export function storageStore(storage, namespace) {
  const full = (key) => `${namespace}:${key}`;
  return {
    shared: false,
    async get(key) {
      const raw = storage.getItem(full(key));
      return raw ? JSON.parse(raw) : null;
    },
    async entries(prefix) {
      const found = [];
      for (let i = 0; i < storage.length; i += 1) {
        const name = storage.key(i);
        if (name?.startsWith(full(prefix))) found.push([name.slice(namespace.length + 1), JSON.parse(storage.getItem(name))]);
      }
      return found.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    },
    async write({ put = [], del = [] }) {
      for (const key of del) storage.removeItem(full(key));
      for (const [key, value] of put) storage.setItem(full(key), JSON.stringify(value));
    },
  };
}

/**
 * Records in a Map. `shared: true` with one `records` Map given to several clients stands in
 * for IndexedDB in tests (tabs of one browser); values are copied, as IndexedDB clones them.
 */
export function memoryStore({ shared = false, records = new Map() } = {}) {
  const copy = (value) => (value === undefined ? null : structuredClone(value));
  return {
    shared,
    records,
    async get(key) { return copy(records.get(key)); },
    async entries(prefix) {
      return [...records].filter(([key]) => key.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, value]) => [key, copy(value)]);
    },
    async write({ put = [], del = [] }) {
      for (const key of del) records.delete(key);
      for (const [key, value] of put) records.set(key, copy(value));
    },
  };
}

/** The origin's IndexedDB, or null (with why) where it cannot be opened (some private modes). */
export async function indexedDbStore(namespace, { indexedDB = globalThis.indexedDB, name = "statesync" } = {}) {
  if (!indexedDB) return null;
  try {
    return new IndexedDbStore(await openDatabase(indexedDB, name), namespace);
  } catch (error) {
    console.warn("statesync: IndexedDB is unavailable; falling back", error);
    return null;
  }
}

/**
 * The store the `storage` option names: "indexeddb" (the default where there is one),
 * "session", "memory", null (memory), a Storage object, or a store of the interface above.
 * What cannot be opened falls back, durable first: IndexedDB, then sessionStorage, then memory.
 */
export async function openStore(storage, namespace) {
  if (storage && typeof storage.write === "function") return storage;
  if (storage && typeof storage.getItem === "function") return storageStore(storage, namespace);
  if (storage === null || storage === "memory") return memoryStore();
  if (storage === undefined || storage === "indexeddb") {
    const durable = await indexedDbStore(namespace);
    if (durable) return durable;
  }
  const session = globalThis.sessionStorage;
  return session ? storageStore(session, namespace) : memoryStore();
}
