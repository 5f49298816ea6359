// Types of statesync.js, the browser client. Documents are plain objects of the fields a
// watch selects; give your own type as the parameter where you know it.

import type { StorageOption } from "./durable.js";

export { memoryStore, storageStore } from "./durable.js";
export type { DurableStore, StorageOption } from "./durable.js";

/** Every document has these; the rest is what the watch or the commit selected. */
export interface Document {
  id: string;
  version: number;
  /** True while a commit of this client that changes it is not yet answered. */
  pending?: boolean;
  [field: string]: unknown;
}

/** A commit the server refused (`code` is its `extensions.code`: CONFLICT, FORBIDDEN, ...). */
export class StatesyncError extends Error {
  constructor(code: string, message: string, extensions?: Record<string, unknown>);
  readonly code: string;
  readonly extensions: Record<string, unknown>;
}

export interface DocumentSpec {
  model: string;
  id: string;
  /** The fields to select besides `id` and `version`, as GraphQL: `"status items { sku }"`. */
  fields?: string;
}

export interface CollectionSpec<T extends Document = Document> {
  model: string;
  /** The model's filter input, as the server's `where` argument takes it. */
  where?: Record<string, unknown> | null;
  fields?: string;
  /** Order of the array handed to the callback (by id when not given). */
  sort?: (a: T, b: T) => number;
  /** Whether an optimistic create belongs in this filtered collection before the server says. */
  match?: (input: Record<string, unknown>) => boolean;
}

export interface WatchInfo {
  /** The value came from the cache of an earlier page and is being caught up. */
  resumed: boolean;
  cursor: string | null;
}

export interface Watch<V> {
  /** What the callback was last given: the same object until something in it changes. */
  readonly value: V;
  close(): void;
}

export type CommitOp = "create" | "update" | "delete";

/** What the server answered a commit with. */
export interface CommitResult<T extends Document = Document> {
  op: string;
  id: string;
  version: number;
  replayed: boolean;
  eventIds: string[];
  changedFields: string[];
  document: T | null;
  resolution?: { strategy: string; [key: string]: unknown } | null;
}

export interface QueuedCommit {
  mutationId: string;
  op: CommitOp;
  model: string;
  id: string;
}

export interface Commit extends QueuedCommit {
  key: string;
  input?: Record<string, unknown>;
  fields: string;
  expectedVersion?: number | null;
}

export interface ClientEvents {
  status: "connecting" | "online" | "offline";
  queue: number;
  committed: { commit: Commit; result: CommitResult };
  resolved: { commit: Commit; result: CommitResult; resolution: NonNullable<CommitResult["resolution"]> };
  conflict: { commit: Commit; error: StatesyncError; dropped: Commit[] };
  rejected: { commit: Commit; error: StatesyncError; dropped: Commit[] };
  error: { watch?: Watch<unknown>; event?: string; errors: unknown[] };
}

export interface StatesyncOptions {
  /** The API's HTTP endpoint (default `/graphql`, relative to the page). */
  url?: string;
  /** The websocket endpoint, when it is not `url` with `ws:` for `http:`. */
  wsUrl?: string;
  /** Asked before every request and every connection, so it can hand out a fresh token. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  adminSecret?: string;
  role?: string;
  /** The signed-in user: keys the queue and the caches, so nobody sends another's commits. */
  user?: string | null;
  storage?: StorageOption;
  storageKey?: string;
  fetch?: typeof fetch;
  webSocketImpl?: unknown;
  connectionParams?: Record<string, unknown> | (() => Record<string, unknown> | Promise<Record<string, unknown>>);
  locks?: LockManager;
  BroadcastChannel?: typeof BroadcastChannel;
}

export interface CommitOptions {
  /** The fields to read back (every watch's of the model, by default). */
  fields?: string;
}

export interface GuardedCommitOptions extends CommitOptions {
  /** A version number, or `"current"`: the version this client shows now. */
  expectedVersion?: number | "current" | null;
}

export interface EventDelivery {
  handler: string;
  status: string;
  attempts: number;
  lastError: string | null;
}

export interface EventProgress {
  id: string;
  type: string;
  settled: boolean;
  deliveries: EventDelivery[];
}

export class Statesync {
  constructor(options?: StatesyncOptions);
  readonly status: "connecting" | "online" | "offline";
  /** Whether this tab is the one sending the shared queue. */
  readonly leading: boolean;
  /** The commits not yet answered, every tab's, oldest first. */
  readonly queued: QueuedCommit[];

  watch<T extends Document = Document>(
    spec: DocumentSpec, onValue: (document: T | null, info: WatchInfo) => void): Watch<T | null>;
  watch<T extends Document = Document>(
    spec: CollectionSpec<T>, onValue: (documents: T[], info: WatchInfo) => void): Watch<T[]>;
  /** Follow an event a commit caused until every handler is done with it. Returns a stop function. */
  watchEvent(eventId: string, onEvent: (event: EventProgress) => void): () => void;

  create<T extends Document = Document>(
    model: string, input: Record<string, unknown>, options?: CommitOptions & { id?: string }): Promise<CommitResult<T>>;
  update<T extends Document = Document>(
    model: string, id: string, patch: Record<string, unknown>, options?: GuardedCommitOptions): Promise<CommitResult<T>>;
  delete(model: string, id: string, options?: GuardedCommitOptions): Promise<CommitResult>;

  on<E extends keyof ClientEvents>(name: E, listener: (value: ClientEvents[E]) => void): () => void;
  setOnline(online: boolean): void;
  /** Resolves once everything queued or cached so far is in storage. */
  saved(): Promise<void>;
  close(): void;
}

export function createStatesync(options?: StatesyncOptions): Statesync;
/** The server's plural of a model name (Order -> orders), as its generated schema has it. */
export function pluralize(name: string): string;
export function jitteredDelay(attempt: number, baseMs?: number, maxMs?: number): number;
