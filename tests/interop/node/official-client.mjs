// Drives a Hubbub hub with the official @microsoft/signalr client over every transport and
// protocol it supports, and reports one JSON line per scenario. Exit code 1 if any failed.
//
//   node official-client.mjs http://127.0.0.1:5000/chathub [combo ...]
//
// combos: ws-json ws-msgpack sse-json lp-json lp-msgpack (default: all)
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import { assert, failed, scenario as report, sleep, waitFor } from "../report.mjs";

const hubUrl = process.argv[2];
if (!hubUrl) {
  console.error("usage: node official-client.mjs HUB_URL [combo ...]");
  process.exit(2);
}
const COMBOS = {
  "ws-json": [signalR.HttpTransportType.WebSockets, "json"],
  "ws-msgpack": [signalR.HttpTransportType.WebSockets, "msgpack"],
  "sse-json": [signalR.HttpTransportType.ServerSentEvents, "json"],
  "lp-json": [signalR.HttpTransportType.LongPolling, "json"],
  "lp-msgpack": [signalR.HttpTransportType.LongPolling, "msgpack"],
};
const selected = process.argv.length > 3 ? process.argv.slice(3) : Object.keys(COMBOS);


function connect(combo, query) {
  const [transport, protocol] = COMBOS[combo];
  const builder = new signalR.HubConnectionBuilder()
    .withUrl(`${hubUrl}?${new URLSearchParams(query)}`, { transport })
    .configureLogging(signalR.LogLevel.None);
  if (protocol === "msgpack") builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  conn.inbox = [];
  for (const method of ["broadcastMessage", "roomMessage", "directMessage", "userJoined", "userLeft"]) {
    conn.on(method, (...args) => conn.inbox.push([method, ...args]));
  }
  return conn;
}
const got = (conn, method, ...args) =>
  conn.inbox.some((m) => m[0] === method && JSON.stringify(m.slice(1)) === JSON.stringify(args));

// Each line names the transport and protocol it ran on.
const scenario = (combo, name, body) => report(name, body, { combo });

for (const combo of selected) {
  const scope = `${combo}-${process.pid}-${Date.now()}`;
  const ann = connect(combo, { name: "ann", scope });
  const bob = connect(combo, { name: "bob", scope });
  const eve = connect(combo, { name: "eve", scope: `${scope}-other` });

  await scenario(combo, "connect", async () => {
    await ann.start();
    await bob.start();
    await eve.start();
    assert(ann.state === "Connected" && bob.state === "Connected", "both connected");
    await waitFor("ann hears bob join", () => got(ann, "userJoined", "bob", 2));
    assert(!eve.inbox.some((m) => m[0] === "userJoined"), "another scope hears no joins");
  });

  await scenario(combo, "broadcast via invoke", async () => {
    await ann.invoke("Send", "ann", "hello");
    await waitFor("bob gets it", () => got(bob, "broadcastMessage", "ann", "hello"));
    await waitFor("ann gets it too", () => got(ann, "broadcastMessage", "ann", "hello"));
  });

  await scenario(combo, "fire-and-forget send", async () => {
    await bob.send("Send", "bob", "no completion needed");
    await waitFor("ann gets it", () => got(ann, "broadcastMessage", "bob", "no completion needed"));
    await sleep(100);
    assert(bob.state === "Connected", `sender still connected (${bob.state})`);
  });

  await scenario(combo, "scopes are isolated", async () => {
    await eve.invoke("Send", "eve", "elsewhere");
    await waitFor("eve gets her own", () => got(eve, "broadcastMessage", "eve", "elsewhere"));
    await sleep(100);
    assert(!ann.inbox.some((m) => m[1] === "eve"), "ann hears nothing from another scope");
    assert(!eve.inbox.some((m) => m[1] === "ann"), "eve hears nothing from ann's scope");
  });

  await scenario(combo, "rooms", async () => {
    assert((await ann.invoke("JoinRoom", "r1")) === 1, "first member");
    assert((await bob.invoke("JoinRoom", "r1")) === 2, "second member");
    await ann.invoke("SendToRoom", "r1", "ann", "in the room");
    await waitFor("bob gets the room message", () => got(bob, "roomMessage", "r1", "ann", "in the room"));
    assert((await bob.invoke("LeaveRoom", "r1")) === 1, "one left");
    await ann.invoke("SendToRoom", "r1", "ann", "after bob left");
    await waitFor("ann gets it", () => got(ann, "roomMessage", "r1", "ann", "after bob left"));
    await sleep(100);
    assert(!got(bob, "roomMessage", "r1", "ann", "after bob left"), "bob no longer in the room");
    let refused = "";
    try { await eve.invoke("SendToRoom", "r1", "eve", "x"); } catch (e) { refused = e.message; }
    assert(refused.includes("Join the room"), `non-member refused: ${refused}`);
  });

  await scenario(combo, "direct message", async () => {
    await ann.invoke("SendToUser", "bob", "psst");
    await waitFor("bob gets it", () => got(bob, "directMessage", "ann", "psst"));
    await waitFor("ann's own copy", () => got(ann, "directMessage", "ann", "psst"));
  });

  await scenario(combo, "invoke with result", async () => {
    const value = { a: 1, list: [true, null, "x"], nested: { f: 1.5 } };
    const echoed = await ann.invoke("Echo", value);
    assert(JSON.stringify(echoed) === JSON.stringify(value), `echo: ${JSON.stringify(echoed)}`);
    const online = await ann.invoke("GetOnline");
    assert(online.connections === 2, `two connections in scope: ${JSON.stringify(online)}`);
    assert(JSON.stringify(online.users.map((u) => u.name)) === '["ann","bob"]', "users listed");
  });

  await scenario(combo, "unknown method", async () => {
    let error = "";
    try { await ann.invoke("NoSuchMethod", 1); } catch (e) { error = e.message; }
    assert(error.includes("Unknown hub method 'NoSuchMethod'"), `error: ${error}`);
    assert(ann.state === "Connected", "still connected");
  });

  await scenario(combo, "streaming", async () => {
    const items = [];
    await new Promise((resolve, reject) => {
      ann.stream("Counter", 5, 10).subscribe({ next: (i) => items.push(i), complete: resolve, error: reject });
    });
    assert(JSON.stringify(items) === "[0,1,2,3,4]", `items: ${JSON.stringify(items)}`);
  });

  await scenario(combo, "stream cancellation", async () => {
    const items = [];
    const sub = ann.stream("Counter", 1000, 20).subscribe({ next: (i) => items.push(i), complete() {}, error() {} });
    await waitFor("a few items", () => items.length >= 3);
    sub.dispose();
    const n = items.length;
    await sleep(200);
    assert(items.length <= n + 1, "no items after cancel");
    assert(ann.state === "Connected", "still connected");
  });

  await scenario(combo, "client-to-server stream", async () => {
    const subject = new signalR.Subject();
    const result = ann.invoke("Collect", subject);
    subject.next(1);
    subject.next("two");
    await sleep(10);
    subject.next({ three: 3 });
    subject.complete();
    const got = await result;
    assert(JSON.stringify(got) === '[1,"two",{"three":3}]', `collected: ${JSON.stringify(got)}`);
  });

  await scenario(combo, "client result", async () => {
    ann.on("ask", (question) => `answer to ${question}`);
    const answer = await ann.invoke("AskCaller", "q1");
    assert(answer === "answer to q1", `answer: ${answer}`);
  });

  await scenario(combo, "oversized message closes with a reason", async () => {
    const big = connect(combo, { name: "big", scope: `${scope}-big` });
    let closedWith = null;
    big.onclose((e) => { closedWith = e ? e.message : "no error"; });
    await big.start();
    big.send("Send", "big", "x".repeat(40000)).catch(() => {});
    await waitFor("close", () => closedWith !== null, 5000);
    assert(/maximum message size/.test(closedWith), `closed with: ${closedWith}`);
    await ann.invoke("Send", "ann", "still fine");
    await waitFor("others unaffected", () => got(bob, "broadcastMessage", "ann", "still fine"));
  });

  await scenario(combo, "stop and leave", async () => {
    await bob.stop();
    assert(bob.state === "Disconnected", "bob disconnected");
    await waitFor("ann hears bob leave", () => got(ann, "userLeft", "bob", 1));
    await ann.stop();
    await eve.stop();
  });
}

process.exit(failed() ? 1 : 0);
