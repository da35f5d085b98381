// A second, independent classic client: node-signalr (npm; its own implementation of the
// ASP.NET SignalR 2.x protocol over WebSockets, clientProtocol 1.5) against Hubbub's classic
// endpoint. One JSON line per scenario; exit code 1 if any failed.
//
//   node node-signalr.mjs HUB_ORIGIN
import { Client } from "node-signalr";
import { assert, failed, scenario, waitFor } from "../report.mjs";

const origin = process.argv[2];
if (!origin) {
  console.error("usage: node node-signalr.mjs HUB_ORIGIN");
  process.exit(2);
}

function connect(name) {
  const client = new Client(`${origin}/signalr`, ["chatHub"]);
  client.qs = { name, scope: "node-signalr" };
  client.callTimeout = 10000;
  client.reconnectDelayTime = 500;
  client.inbox = [];
  for (const method of ["broadcastMessage", "userJoined", "userLeft", "directMessage"]) {
    client.connection.hub.on("chatHub", method, (...args) => client.inbox.push([method, ...args]));
  }
  const connected = new Promise((resolve, reject) => {
    client.on("connected", resolve);
    client.on("error", (e) => reject(new Error(`${e.code}: ${e.message}`)));
  });
  client.start();
  return { client, connected };
}
const has = (client, ...item) => client.inbox.some((m) => JSON.stringify(m) === JSON.stringify(item));


await scenario("node-signalr: connect, Send → broadcastMessage, results, errors, presence", async () => {
  const a = connect("ns-ann");
  await a.connected;
  const b = connect("ns-ben");
  await b.connected;
  try {
    await waitFor("ann hears ben join", () => has(a.client, "userJoined", "ns-ben", 2));
    await a.client.connection.hub.call("chatHub", "send", "ns-ann", "hello from node-signalr");
    for (const c of [a.client, b.client]) {
      await waitFor("broadcastMessage", () => has(c, "broadcastMessage", "ns-ann", "hello from node-signalr"));
    }
    const echoed = await b.client.connection.hub.call("chatHub", "Echo", { deep: ["x", 2] });
    assert(JSON.stringify(echoed) === JSON.stringify({ deep: ["x", 2] }), `echo: ${JSON.stringify(echoed)}`);
    const online = await b.client.connection.hub.call("chatHub", "GetOnline");
    assert(online.connections === 2, `GetOnline: ${JSON.stringify(online)}`);
    let refused;
    try {
      await b.client.connection.hub.call("chatHub", "NoSuchMethod");
    } catch (e) {
      refused = String(e);
    }
    assert(refused && /could not be resolved/.test(refused), `unknown method: ${refused}`);
    await b.client.connection.hub.call("chatHub", "SendToUser", "ns-ann", "psst");
    await waitFor("direct message", () => has(a.client, "directMessage", "ns-ben", "psst"));
    b.client.end();
    await waitFor("ann hears ben leave", () => has(a.client, "userLeft", "ns-ben", 1));
  } finally {
    a.client.end();
    b.client.end();
  }
});

process.exit(failed() ? 1 : 0);
