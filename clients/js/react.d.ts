// Types of react.js, the React bindings of the browser client.

import type { ReactNode } from "react";

import type { CollectionSpec, Document, DocumentSpec, Statesync } from "./statesync.js";

export function StatesyncProvider(props: { client: Statesync; children?: ReactNode }): ReactNode;
export function useStatesync(): Statesync;

/** `undefined` until the first snapshot; then the document, or `null` where there is none. */
export function useWatch<T extends Document = Document>(spec: DocumentSpec): T | null | undefined;
/** `undefined` until the first snapshot; then the matching documents, sorted. */
export function useWatch<T extends Document = Document>(spec: CollectionSpec<T>): T[] | undefined;

export function useDocument<T extends Document = Document>(
  model: string, id: string, options?: { fields?: string }): T | null | undefined;
export function useCollection<T extends Document = Document>(
  model: string, options?: Omit<CollectionSpec<T>, "model">): T[] | undefined;
