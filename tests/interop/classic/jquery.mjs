// Drives Hubbub's classic endpoint with the real jQuery SignalR 2.4.3 client in Chromium, on a
// page served by `hubbub hub --static`, and reports one JSON line per scenario. Exit code 1 if
// any failed.
//
//   node jquery.mjs PAGE_ORIGIN [--core CORE_HUB_URL] [--only NAME,...] [--transports t1,t2]
//
// PAGE_ORIGIN is the hub serving the page and /signalr (http://127.0.0.1:PORT). One client of
// each scenario reaches it through a TCP proxy of this script's, which can cut every
// connection and refuse new ones (the socket cut mid-chat). With --core, the official
// @microsoft/signalr client joins the same chat at CORE_HUB_URL (another node of a fleet, or
// the same hub's /chathub).
import net from "node:net";
import { chromium } from "playwright-core";
import * as signalR from "@microsoft/signalr";
import { assert, failed, scenario as report, sleep, waitFor } from "../report.mjs";

const args = process.argv.slice(2);
const origin = args[0];
if (!origin) {
  console.error("usage: node jquery.mjs PAGE_ORIGIN [--core CORE_HUB_URL] [--only a,b]");
  process.exit(2);
}
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const coreUrl = option("--core");
const only = option("--only")?.split(",");
const transports = (option("--transports") ?? "webSockets,serverSentEvents,longPolling,auto").split(",");


// A TCP proxy that can cut every connection through it and refuse new ones until resumed.
function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", kill).on("close", kill);
    upstream.on("error", kill).on("close", kill);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        origin: `http://127.0.0.1:${server.address().port}`,
        cut() {
          blocked = true;
          for (const s of sockets) s.destroy();
          sockets.clear();
        },
        resume() {
          blocked = false;
        },
        close() {
          server.close();
          for (const s of sockets) s.destroy();
        },
      });
    });
  });
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const proxy = await startProxy(origin);

// Only the scenarios --only names.
async function scenario(name, body) {
  if (only && !only.some((o) => name.startsWith(o))) return;
  await report(name, body);
}

// Opens the page as `name` in `scope` over `transport`; resolves when $.connection.hub.start()
// is done.
async function openPage(base, name, scope, transport) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  const query = new URLSearchParams({ name, scope, transport });
  await page.goto(`${base}/?${query}`);
  const info = await page.evaluate(() => window.started);
  page.info = info;
  page.context_ = context;
  return page;
}
const inbox = (page) => page.evaluate(() => window.inbox);
const events = (page) => page.evaluate(() => window.events);
const has = async (page, ...item) =>
  (await inbox(page)).some((m) => JSON.stringify(m) === JSON.stringify(item));
const call = (page, method, ...a) => page.evaluate(([m, a]) => window.call(m, ...a), [method, a]);

for (const transport of transports) {
  const scope = `t-${transport}`;
  await scenario(`${transport}: Send reaches broadcastMessage, results, hub errors with data, progress, caller state`, async () => {
    const alice = await openPage(proxy.origin, `alice-${transport}`, scope, transport);
    const bob = await openPage(origin, `bob-${transport}`, scope, transport);
    try {
      if (transport !== "auto") assert(alice.info.transport === transport, `alice uses ${alice.info.transport}`);
      else assert(alice.info.transport === "webSockets", `auto picked ${alice.info.transport}`);
      await waitFor("alice hears bob join", () => has(alice, "userJoined", `bob-${transport}`, 2));
      const sent = await call(alice, "send", `alice-${transport}`, "hello from jQuery");
      assert(sent.ok, `send failed: ${JSON.stringify(sent)}`);
      for (const page of [alice, bob]) {
        await waitFor("broadcastMessage", () => has(page, "broadcastMessage", `alice-${transport}`, "hello from jQuery"));
      }
      const echo = await call(bob, "echo", { nested: [1, "two", null] });
      assert(echo.ok && JSON.stringify(echo.value) === JSON.stringify({ nested: [1, "two", null] }), `echo: ${JSON.stringify(echo)}`);
      const refused = await call(bob, "sendToRoom", "lobby", "bob", "hi");
      assert(!refused.ok && refused.source === "HubException" && refused.data && refused.data.room === "lobby",
        `hub error: ${JSON.stringify(refused)}`);
      const unknown = await call(bob, "joinRoom");
      assert(!unknown.ok && /argument/.test(unknown.message), `binding error: ${JSON.stringify(unknown)}`);
      const counted = await call(bob, "counter", 3, 0);
      assert(counted.ok && JSON.stringify(counted.progress) === "[0,1,2]", `progress: ${JSON.stringify(counted)}`);
      const joined = await call(bob, "joinRoom", "lobby");
      assert(joined.ok && joined.value === 1, `joinRoom: ${JSON.stringify(joined)}`);
      const roomSent = await call(bob, "sendToRoom", "lobby", "bob", "in the room");
      assert(roomSent.ok, `sendToRoom: ${JSON.stringify(roomSent)}`);
      await waitFor("roomMessage", () => has(bob, "roomMessage", "lobby", "bob", "in the room"));
      // Caller state goes to the hub with each call and stays the client's (the result does
      // not echo it: a 2.4.3 hub sends back only what its method changed).
      const state = await bob.evaluate(async () => {
        $.connection.chatHub.state.color = "blue";
        const r = await window.call("echo", 1);
        return { r, color: $.connection.chatHub.state.color };
      });
      assert(state.r.ok && state.color === "blue", `caller state: ${JSON.stringify(state)}`);
    } finally {
      await alice.context_.close();
      await bob.context_.close();
    }
  });

  await scenario(`${transport}: a socket cut mid-chat, every message sent meanwhile arrives after the reconnect`, async () => {
    const alice = await openPage(proxy.origin, `carol-${transport}`, `${scope}-cut`, transport);
    const bob = await openPage(origin, `dave-${transport}`, `${scope}-cut`, transport);
    try {
      await waitFor("carol hears dave", () => has(alice, "userJoined", `dave-${transport}`, 2));
      assert((await call(bob, "send", "dave", "before the cut")).ok, "send before");
      await waitFor("before the cut", () => has(alice, "broadcastMessage", "dave", "before the cut"));
      proxy.cut();
      await waitFor("carol reconnecting", async () => (await events(alice)).includes("reconnecting"));
      const texts = Array.from({ length: 10 }, (_, i) => `while cut ${i}`);
      for (const text of texts) {
        const r = await call(bob, "send", "dave", text);
        assert(r.ok, `send while cut: ${JSON.stringify(r)}`);
      }
      proxy.resume();
      await waitFor("carol reconnected", async () => (await events(alice)).includes("reconnected"), 20000);
      await waitFor("every message sent meanwhile", async () => {
        const got = (await inbox(alice)).filter((m) => m[0] === "broadcastMessage" && m[1] === "dave").map((m) => m[2]);
        return texts.every((t) => got.includes(t));
      });
      const got = (await inbox(alice)).filter((m) => m[0] === "broadcastMessage" && m[1] === "dave").map((m) => m[2]);
      assert(JSON.stringify(got) === JSON.stringify(["before the cut", ...texts]), `in order, once each: ${JSON.stringify(got)}`);
      // And the chat goes on.
      assert((await call(alice, "send", "carol", "back")).ok, "send after");
      await waitFor("after the reconnect", () => has(bob, "broadcastMessage", "carol", "back"));
    } finally {
      proxy.resume();
      await alice.context_.close();
      await bob.context_.close();
    }
  });

  await scenario(`${transport}: stop sends abort, the hub runs its disconnected callback at once`, async () => {
    const alice = await openPage(proxy.origin, `erin-${transport}`, `${scope}-stop`, transport);
    const bob = await openPage(origin, `frank-${transport}`, `${scope}-stop`, transport);
    try {
      await waitFor("erin hears frank", () => has(alice, "userJoined", `frank-${transport}`, 2));
      await alice.evaluate(() => $.connection.hub.stop());
      // Without abort the hub would wait for its DisconnectTimeout (30 s).
      await waitFor("frank hears erin leave", () => has(bob, "userLeft", `erin-${transport}`, 1), 10000);
      assert((await events(alice)).includes("disconnected"), "erin's disconnected event");
    } finally {
      await alice.context_.close();
      await bob.context_.close();
    }
  });
}

await scenario("connected app parts: two iframes of a page chat through the hub; another page's parts do not hear them", async () => {
  const pages = [];
  try {
    for (const scope of ["page-one", "page-two"]) {
      const context = await browser.newContext();
      const page = await context.newPage();
      page.context_ = context;
      await page.goto(`${origin}/parts.html?scope=${scope}`);
      pages.push(page);
    }
    const part = async (page, name) => {
      const frame = await waitFor(`iframe ${name}`, async () => page.frame({ name }));
      await frame.waitForFunction(() => window.started);
      await frame.evaluate(() => window.started);
      return frame;
    };
    const [oneA, oneB, twoA, twoB] = [
      await part(pages[0], "part-a"), await part(pages[0], "part-b"),
      await part(pages[1], "part-a"), await part(pages[1], "part-b"),
    ];
    const frameHas = async (frame, ...item) =>
      (await frame.evaluate(() => window.inbox)).some((m) => JSON.stringify(m) === JSON.stringify(item));
    const sent = await oneA.evaluate(() => window.call("send", "part-a", "selection changed"));
    assert(sent.ok, JSON.stringify(sent));
    await waitFor("the other part of page one", () => frameHas(oneB, "broadcastMessage", "part-a", "selection changed"));
    assert((await twoA.evaluate(() => window.call("send", "part-a", "page two only"))).ok, "page two sends");
    await waitFor("page two's other part", () => frameHas(twoB, "broadcastMessage", "part-a", "page two only"));
    for (const frame of [twoA, twoB]) {
      assert(!(await frameHas(frame, "broadcastMessage", "part-a", "selection changed")), "page two heard page one");
    }
    for (const frame of [oneA, oneB]) {
      assert(!(await frameHas(frame, "broadcastMessage", "part-a", "page two only")), "page one heard page two");
    }
  } finally {
    for (const page of pages) await page.context_.close();
  }
});

if (coreUrl) {
  await scenario("mixed: jQuery and the official @microsoft/signalr client in one chat", async () => {
    const scope = "mixed";
    const core = new signalR.HubConnectionBuilder()
      .withUrl(`${coreUrl}?${new URLSearchParams({ name: "core-carol", scope })}`)
      .configureLogging(signalR.LogLevel.None)
      .build();
    const coreInbox = [];
    for (const m of ["broadcastMessage", "userJoined", "userLeft", "directMessage"]) {
      core.on(m, (...a) => coreInbox.push([m, ...a]));
    }
    const coreHas = (...item) => coreInbox.some((m) => JSON.stringify(m) === JSON.stringify(item));
    await core.start();
    // The hub adds a Core connection to its scope right after the handshake (as ASP.NET Core
    // runs OnConnected): wait until it is in before the classic client arrives.
    await waitFor("the Core client in its scope", async () => (await core.invoke("GetOnline")).connections === 1);
    const page = await openPage(origin, "jquery-jim", scope, "auto");
    try {
      await waitFor("core hears jim join", () => coreHas("userJoined", "jquery-jim", 2))
        .catch((e) => { throw new Error(`${e.message}; the Core client got ${JSON.stringify(coreInbox)}`); });
      assert((await call(page, "send", "jquery-jim", "hi from 2.x")).ok, "classic send");
      await waitFor("core gets the classic message", () => coreHas("broadcastMessage", "jquery-jim", "hi from 2.x"));
      await core.invoke("Send", "core-carol", "hi from Core");
      await waitFor("classic gets the Core message", () => has(page, "broadcastMessage", "core-carol", "hi from Core"));
      const online = await call(page, "getOnline");
      assert(online.ok && online.value.connections === 2, `presence counts both: ${JSON.stringify(online)}`);
      await core.invoke("SendToUser", "jquery-jim", "psst");
      await waitFor("direct message to the classic user", () => has(page, "directMessage", "core-carol", "psst"));
      assert((await call(page, "sendToUser", "core-carol", "psst back")).ok, "classic SendToUser");
      await waitFor("direct message to the Core user", () => coreHas("directMessage", "jquery-jim", "psst back"));
      await page.evaluate(() => $.connection.hub.stop());
      await waitFor("core hears jim leave", () => coreHas("userLeft", "jquery-jim", 1));
    } finally {
      await page.context_.close();
      await core.stop();
    }
  });
}

proxy.close();
await browser.close();
process.exit(failed() ? 1 : 0);
