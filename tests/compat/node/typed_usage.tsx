// What an app written in strict TypeScript does with the client; it only has to compile.
// Each `@ts-expect-error` is a mistake the declarations must catch (tsc fails if it does not).
import { createStatesync, StatesyncError, type CommitResult, type Document } from "@statesync/client";
import { StatesyncProvider, useCollection, useDocument } from "@statesync/client/react";

interface Order extends Document {
  status: string;
  totalCents: number | null;
}

const sync = createStatesync({ url: "/graphql", user: "ada", getToken: async () => "token", storage: "memory" });

const one = sync.watch<Order>({ model: "Order", id: "o1", fields: "status totalCents" }, (order, { cursor }) => {
  const status: string | undefined = order?.status;
  const at: string | null = cursor;
  void status; void at;
});
const maybe: Order | null = one.value;
one.close();

const many = sync.watch<Order>({ model: "Order", where: { status: { eq: "open" } }, sort: (a, b) => a.version - b.version },
  (orders) => { const first: Order | undefined = orders[0]; void first; });
const all: Order[] = many.value;

async function commits(): Promise<void> {
  const created: CommitResult<Order> = await sync.create<Order>("Order", { status: "open" }, { id: "o2" });
  const total: number | null | undefined = created.document?.totalCents;
  await sync.update("Order", "o2", { note: "gift" }, { expectedVersion: "current" });
  await sync.delete("Order", "o2", { expectedVersion: created.version });
  try {
    await sync.update("Order", "o2", {}, { expectedVersion: 3 });
  } catch (error) {
    if (error instanceof StatesyncError) console.log(error.code, error.extensions);
  }
  void total;
}

const stop = sync.on("conflict", ({ commit, error }) => console.log(commit.mutationId, error.code));
sync.on("queue", (count) => { const n: number = count; void n; });
sync.on("status", (status) => { if (status === "offline") sync.setOnline(true); });
stop();

function OrderRow({ id }: { id: string }) {
  const order = useDocument<Order>("Order", id, { fields: "status" });
  if (order === undefined) return <p>loading</p>;
  return <p>{order === null ? "gone" : order.status}</p>;
}

function Board() {
  const orders = useCollection<Order>("Order", { where: { status: { eq: "open" } }, fields: "status" });
  return <ul>{orders?.map((order) => <OrderRow key={order.id} id={order.id} />)}</ul>;
}

export const app = <StatesyncProvider client={sync}><Board /></StatesyncProvider>;

// @ts-expect-error: a watch needs a model
sync.watch({ id: "o1" }, () => {});
// @ts-expect-error: expectedVersion is a number or "current"
void sync.update("Order", "o1", {}, { expectedVersion: "latest" });
// @ts-expect-error: there is no such event
sync.on("changed", () => {});
// @ts-expect-error: a document watch's value may be null
const sure: Order = one.value;
// @ts-expect-error: the provider needs a client
export const bare = <StatesyncProvider><Board /></StatesyncProvider>;

void maybe; void all; void commits; void sure;
