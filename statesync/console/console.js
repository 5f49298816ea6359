// The operator console: the service's roles and backlogs, the live change feed, events
// with their deliveries, and the dead letters with a redeliver button. Plain GraphQL over
// the API (the admin's fields), polled every POLL_MS, and one subscription per model for
// the feed, started at the feed's head (no snapshot: only what happens from now on).
import { createClient } from "graphql-ws";

const POLL_MS = 2000;
const FEED_ROWS = 200;
const SECRET_KEY = "statesync-console-secret";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.map((child) => (child instanceof Node ? child : String(child ?? ""))));
  return node;
};

const headers = () => {
  const secret = sessionStorage.getItem(SECRET_KEY);
  return secret ? { "x-statesync-admin-secret": secret } : {};
};

class Refused extends Error {}

async function graphql(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", ...headers() },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  const error = body.errors?.[0];
  if (error) {
    const code = error.extensions?.code;
    if (code === "FORBIDDEN" || code === "UNAUTHENTICATED") throw new Refused(error.message);
    throw new Error(`${code}: ${error.message}`);
  }
  return body.data;
}

const SERVICE = `{ service { headCursor deliveredCursor sequencerActive sequencingHere relayActive
  outboxBacklog deliveries { status count } subscriptions { model subscriptions } } }`;
const EVENT_FIELDS = `id type key createdAt requestId deliveries { handler status attempts lastError }`;
const EVENTS = `{ recent: events(first: 30) { ${EVENT_FIELDS} } dead: events(status: DEAD, first: 100) { ${EVENT_FIELDS} } }`;
const MODELS = `{ __schema { subscriptionType { fields { name args { name } type { name ofType { name } } } } } }`;
const REDELIVER = `mutation($id: ID!, $handler: String) { redeliverEvent(id: $id, handler: $handler) { id } }`;

const shortId = (id) => (id && id.length > 12 ? `${id.slice(0, 8)}…` : id ?? "");

function showService({ service }) {
  const sequencer = service.sequencerActive ? (service.sequencingHere ? "active, here" : "active") : "none";
  $("sequencer").textContent = sequencer;
  $("sequencer").className = service.sequencerActive ? "on" : "off";
  $("relay").textContent = service.relayActive ? "active" : "none";
  $("relay").className = service.relayActive ? "on" : "off";
  $("head").textContent = service.headCursor;
  $("delivered").textContent = service.deliveredCursor ?? "—";
  $("backlog").textContent = service.outboxBacklog;
  $("deliveries").replaceChildren(...service.deliveries.map(({ status, count }) =>
    el("li", { class: `status-${status.toLowerCase()}` }, el("span", {}, status.toLowerCase()), el("span", {}, count))));
  $("subscriptions").replaceChildren(...(service.subscriptions.length
    ? service.subscriptions.map(({ model, subscriptions }) => el("li", {}, el("span", {}, model), el("span", {}, subscriptions)))
    : [el("li", { class: "quiet" }, "none")]));
}

function deliveriesCell(deliveries) {
  if (!deliveries.length) return el("span", { class: "quiet" }, "no handler");
  return el("span", {}, ...deliveries.map((d) =>
    el("span", { class: `status-${d.status.toLowerCase()}`, title: d.lastError ?? "" },
       `${d.handler}: ${d.status.toLowerCase()} (${d.attempts}) `)));
}

function showEvents({ recent, dead }) {
  $("events").replaceChildren(...recent.map((e) => el("tr", { "data-event": e.id },
    el("td", { title: e.id }, shortId(e.id)), el("td", {}, e.type), el("td", {}, e.key ?? ""),
    el("td", { title: e.requestId ?? "" }, shortId(e.requestId)), el("td", {}, deliveriesCell(e.deliveries)))));
  const letters = dead.flatMap((e) => e.deliveries.filter((d) => d.status === "DEAD").map((d) => ({ event: e, delivery: d })));
  $("dead-count").textContent = letters.length ? `(${letters.length})` : "";
  $("dead").replaceChildren(...(letters.length ? letters.map(({ event, delivery }) =>
    el("tr", { "data-event": event.id, "data-handler": delivery.handler },
      el("td", { title: event.id }, `${event.type} ${event.key ?? ""}`), el("td", {}, delivery.handler),
      el("td", {}, delivery.attempts), el("td", { class: "error" }, delivery.lastError ?? ""),
      el("td", {}, el("button", { type: "button", onclick: (click) => redeliver(click.target, event.id, delivery.handler) },
                      "redeliver")))) : [el("tr", {}, el("td", { class: "quiet", colspan: "5" }, "none"))]));
}

async function redeliver(button, id, handler) {
  button.disabled = true;
  button.textContent = "sent";
  try {
    await graphql(REDELIVER, { id, handler });
    await refresh();
  } catch (error) {
    problem(error);
    button.disabled = false;
    button.textContent = "redeliver";
  }
}

function problem(error) {
  $("problem").textContent = error ? String(error.message ?? error) : "";
}

let signedIn = false;
async function refresh() {
  try {
    const [service, events] = await Promise.all([graphql(SERVICE), graphql(EVENTS)]);
    showService(service);
    showEvents(events);
    problem(null);
    if (!signedIn) {
      signedIn = true;
      $("credentials").hidden = true;
      startFeed(service.service.headCursor);
    }
  } catch (error) {
    if (error instanceof Refused) $("credentials").hidden = false;
    problem(error);
  }
}

// Collection subscriptions are the fields whose change type ends in Change and that take `where`.
async function collections() {
  const fields = (await graphql(MODELS)).__schema.subscriptionType.fields;
  return fields.flatMap((f) => {
    const type = f.type.name ?? f.type.ofType?.name ?? "";
    const where = f.args.some((a) => a.name === "where");
    return type.endsWith("Change") && where ? [{ field: f.name, model: type.slice(0, -"Change".length) }] : [];
  });
}

async function startFeed(since) {
  const ws = createClient({
    url: location.origin.replace(/^http/, "ws") + "/graphql",
    connectionParams: () => ({ headers: headers() }),
    retryAttempts: Infinity, shouldRetry: () => true,
  });
  for (const { field, model } of await collections()) {
    // graphql-ws sends this payload again on a reconnect: keeping `since` current resumes.
    const payload = { query: `subscription($since: String) { ${field}(since: $since) {
      op cursor id version changedFields } }`, variables: { since } };
    ws.subscribe(payload, {
      next: ({ data, errors }) => {
        if (errors) return problem(new Error(errors[0].message));
        const change = data[field];
        payload.variables.since = change.cursor;
        if (change.op === "SNAPSHOT" || change.op === "RESYNC") return;
        addChange(model, change);
      },
      error: (error) => problem(error instanceof Error ? error : new Error("the feed closed")),
      complete: () => {},
    });
  }
}

function addChange(model, change) {
  const rows = $("feed");
  rows.prepend(el("tr", { "data-model": model, "data-id": change.id },
    el("td", {}, change.cursor), el("td", {}, model), el("td", {}, change.id), el("td", {}, change.op),
    el("td", {}, change.version), el("td", {}, (change.changedFields ?? []).join(", "))));
  while (rows.children.length > FEED_ROWS) rows.lastChild.remove();
}

$("credentials").addEventListener("submit", (submit) => {
  submit.preventDefault();
  sessionStorage.setItem(SECRET_KEY, new FormData(submit.target).get("secret"));
  refresh();
});

refresh();
setInterval(refresh, POLL_MS);
