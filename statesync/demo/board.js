// The demo order board: every value on screen comes from a watch; every edit is a commit.
// You are a customer (`?as=<name>`, Ada by default) and see only your own orders: the
// server's rules (schema/shop.py) decide, with a token `statesync dev` mints for you.
import { createStatesync } from "/client/statesync.js";

const user = new URLSearchParams(location.search).get("as")?.trim() || "ada";

// `statesync dev` serves POST /dev/token; where nothing mints tokens the page goes without.
const token = fetch("/dev/token", {
  method: "POST", headers: { "content-type": "application/json" },
  body: JSON.stringify({ user, role: "customer" }),
}).then((r) => (r.ok ? r.json() : null)).then((body) => body?.token ?? null).catch(() => null);

// `user`: each customer's queue and caches apart, shared by that customer's tabs.
const sync = createStatesync({ url: "/graphql", getToken: () => token, user });
window.statesync = sync; // for the console (and the browser tests)

const $ = (selector, root = document) => root.querySelector(selector);

$("#user").textContent = user;
$("#sign-in").addEventListener("submit", (e) => {
  e.preventDefault();
  const other = e.target.user.value.trim();
  if (other) location.search = `?as=${encodeURIComponent(other)}`;
});
const money = (cents) => (cents === null || cents === undefined ? "—" : `$${(cents / 100).toFixed(2)}`);
const newestFirst = (a, b) => (b.createdAt ?? "\uffff").localeCompare(a.createdAt ?? "\uffff");

let products = [];
let lastOrders = [];
const eventsByOrder = new Map(); // order id -> handler work still running for it

// ---- connection ---------------------------------------------------------------------------

function showStatus(status) {
  const pill = $("#status");
  pill.textContent = status;
  pill.dataset.status = status;
  $("#offline").checked = status === "offline";
}
sync.on("status", showStatus);
showStatus(sync.status);

function showQueue(count) {
  const pill = $("#queued");
  pill.textContent = `${count} queued`;
  pill.dataset.count = String(count);
}
sync.on("queue", showQueue); // every tab of this customer shows the same count
showQueue(sync.queued.length);
$("#offline").addEventListener("change", (e) => sync.setOnline(!e.target.checked));

function notify(text) {
  $("#notice-text").textContent = text;
  $("#notice").hidden = false;
}
$("#notice-close").addEventListener("click", () => { $("#notice").hidden = true; });
sync.on("conflict", ({ commit, error }) => {
  const current = error.extensions.current;
  notify(`Conflict: order ${commit.id} changed meanwhile; showing the server's version ` +
         `(v${current?.version}).`);
});
sync.on("rejected", ({ error }) => notify(`Refused: ${error.message}`));

// ---- catalog and new orders -----------------------------------------------------------------

sync.watch({ model: "Product", fields: "sku name priceCents",
             sort: (a, b) => a.name.localeCompare(b.name) }, (value) => {
  products = value;
  const box = $("#products");
  const chosen = new Map([...box.querySelectorAll("input[data-sku]")].map((i) => [i.dataset.sku, i.value]));
  box.replaceChildren(Object.assign(document.createElement("legend"), { textContent: "Items" }));
  for (const product of products) {
    const row = document.createElement("label");
    row.className = "product";
    row.innerHTML = `<span></span><small class="quiet"></small><input type="number" min="0" max="99">`;
    row.children[0].textContent = product.name;
    row.children[1].textContent = money(product.priceCents);
    const qty = row.children[2];
    qty.dataset.sku = product.sku;
    qty.placeholder = "0";
    qty.value = chosen.get(product.sku) ?? "";
    box.append(row);
  }
  renderOrders(lastOrders); // item names come from the catalog
});

$("#new-order").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.target;
  const items = [...form.querySelectorAll("input[data-sku]")]
    .map((input) => ({ sku: input.dataset.sku, qty: Number(input.value) }))
    .filter((item) => item.qty > 0);
  if (!items.length) return notify("Pick at least one item.");
  form.reset();
  // No customer: the server sets it from the token (a preset of the customer's rule).
  const result = await sync.create("Order", { items }).catch(() => null);
  if (result) followEvents(result.id, result.eventIds);
});

// "pricing…" while the worker has the order's events in hand, from the events themselves.
function followEvents(orderId, eventIds) {
  for (const eventId of eventIds) {
    eventsByOrder.set(orderId, (eventsByOrder.get(orderId) ?? 0) + 1);
    renderOrders(lastOrders);
    const stop = sync.watchEvent(eventId, (event) => {
      if (!event.settled) return;
      eventsByOrder.set(orderId, eventsByOrder.get(orderId) - 1);
      stop();
      renderOrders(lastOrders);
    });
  }
}

// ---- the board ------------------------------------------------------------------------------

// Each item shows its product through the reference: a price change in the catalog updates
// every order showing it, at once.
sync.watch({ model: "Order",
             fields: "createdAt customer items { sku qty product { name priceCents } } note status totalCents rejectReason",
             sort: newestFirst }, renderOrders);

function renderOrders(orders) {
  lastOrders = orders;
  $("#order-count").textContent = `(${orders.length})`;
  $("#orders").replaceChildren(...orders.map(orderCard));
}

function orderCard(order) {
  const card = $("#order-card").content.firstElementChild.cloneNode(true);
  const busy = (eventsByOrder.get(order.id) ?? 0) > 0;
  Object.assign(card.dataset, { orderId: order.id, version: String(order.version), status: order.status ?? "NEW" });
  card.classList.toggle("pending", Boolean(order.pending));
  $(".customer", card).textContent = order.customer ?? user; // an optimistic create has none yet
  const badge = $(".badge", card);
  badge.textContent = order.pending ? "saving…" : order.status === "NEW" || busy ? "pricing…" : order.status.toLowerCase();
  badge.dataset.status = order.status ?? "NEW";
  $(".version", card).textContent = order.pending ? "unsaved" : `v${order.version}`;
  $(".total", card).textContent = order.status === "REJECTED" ? order.rejectReason : `total ${money(order.totalCents)}`;
  $(".events", card).textContent = busy ? "worker busy" : "";
  $(".delete", card).addEventListener("click", () => sync.delete("Order", order.id).catch(() => {}));
  $(".items", card).replaceChildren(...order.items.map((item, index) => itemRow(order, item, index)));
  // A note edited here and quantities edited on another screen both land: the server
  // merges edits of different fields (schema/shop.py merge_order), even made offline.
  const note = $(".note", card);
  note.value = order.note ?? "";
  note.addEventListener("change", () =>
    sync.update("Order", order.id, { note: note.value || null }, { expectedVersion: "current" })
      .catch(() => {}));
  return card;
}

function itemRow(order, item, index) {
  const row = document.createElement("li");
  row.dataset.sku = item.sku;
  // An optimistic edit carries no product yet: the catalog's, until the server answers.
  const product = item.product ?? products.find((p) => p.sku === item.sku);
  row.innerHTML = `<span class="name"></span><span class="price"></span>` +
    `<button class="less" type="button">−</button>` +
    `<span class="qty"></span><button class="more" type="button">+</button>`;
  $(".name", row).textContent = product?.name ?? item.sku;
  $(".price", row).textContent = product ? money(product.priceCents) : "";
  $(".qty", row).textContent = String(item.qty);
  const change = (delta) => {
    const items = order.items.map((it, i) => (i === index ? { sku: it.sku, qty: Math.max(1, it.qty + delta) }
                                                          : { sku: it.sku, qty: it.qty }));
    // "current": a conflict only if someone else changed the items since we saw them.
    sync.update("Order", order.id, { items }, { expectedVersion: "current" }).catch(() => {});
  };
  $(".less", row).addEventListener("click", () => change(-1));
  $(".more", row).addEventListener("click", () => change(+1));
  return row;
}
