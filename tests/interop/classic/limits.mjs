// The classic endpoint's timers and limits, on a hub started with --max-messages-per-second 20:
// a burst of sends over the rate limit is slowed, not refused (long polling and WebSockets),
// as on Core; only a flood that would wait more than 10 s is refused. A client that goes away
// without abort is announced as left after the 30 s DisconnectTimeout, not before; one that
// aborts, at once.
//
//   node limits.mjs ORIGIN [--only pacing|disconnect]
import WebSocket from "ws";
import { LongPolling, assert, connectionData, failed, request, scenario, sleep } from "./wire.mjs";

const origin = process.argv[2];
const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
if (!origin) {
  console.error("usage: node limits.mjs ORIGIN [--only pacing|disconnect]");
  process.exit(2);
}

if (!only || only === "pacing") {
  await scenario("long polling: 100 sends at once over a limit of 20/s all run, slowed, none refused", async () => {
    const me = await LongPolling.open(origin, "burst");
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        request(origin, "send", { query: me.query, method: "POST", limit: 30000, body: { data: JSON.stringify({ H: "chatHub", M: "Send", A: ["burst", `m${i}`], I: i }) } }),
      ),
    );
    const refused = results.filter((r, i) => r.status !== 200 || r.text !== `{"I":"${i}"}`);
    assert(refused.length === 0, `refused or failed: ${JSON.stringify(refused.slice(0, 3))} (${refused.length})`);
    const got = new Set();
    const deadline = Date.now() + 20000;
    while (got.size < 100) {
      assert(Date.now() < deadline, `only ${got.size} of 100 broadcasts arrived`);
      for (const m of await me.poll()) if (m.M === "broadcastMessage" && m.A[0] === "burst") got.add(m.A[1]);
    }
  });

  await scenario("webSockets: 100 frames at once over a limit of 20/s all answered, the socket stays open", async () => {
    const n = JSON.parse((await request(origin, "negotiate", { query: { clientProtocol: "2.1", connectionData, name: "wsburst" } })).text);
    const query = { transport: "webSockets", clientProtocol: "2.1", connectionToken: n.ConnectionToken, connectionData, name: "wsburst" };
    const ws = new WebSocket(`${origin.replace("http", "ws")}/signalr/connect?${new URLSearchParams(query)}`);
    const results = new Set();
    let closed = null;
    ws.on("close", (code, reason) => (closed = `${code} ${reason}`));
    ws.on("message", (d) => {
      const f = JSON.parse(String(d));
      if (f.I !== undefined && !f.E) results.add(f.I);
    });
    await new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
    await request(origin, "start", { query });
    for (let i = 0; i < 100; i++) ws.send(JSON.stringify({ H: "chatHub", M: "Echo", A: [i], I: String(i) }));
    const deadline = Date.now() + 20000;
    while (results.size < 100) {
      assert(closed === null, `the socket closed: ${closed}`);
      assert(Date.now() < deadline, `only ${results.size} of 100 results arrived`);
      await sleep(20);
    }
    ws.close();
  });

  await scenario("a flood that would wait more than 10 s is refused with 429 and a reason; the rest run", async () => {
    const me = await LongPolling.open(origin, "flood");
    const results = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        request(origin, "send", { query: me.query, method: "POST", limit: 30000, body: { data: JSON.stringify({ H: "chatHub", M: "Echo", A: [i], I: i }) } }),
      ),
    );
    const refused = results.filter((r) => r.status === 429);
    const ran = results.filter((r) => r.status === 200);
    assert(refused.length > 0 && /slow down/.test(refused[0].text), `refused: ${refused.length} ${refused[0]?.text}`);
    assert(ran.length + refused.length === 400 && ran.length >= 200, `ran ${ran.length}, refused ${refused.length}`);
  });
}

if (!only || only === "disconnect") {
  await scenario("gone without abort: announced as left after the 30 s DisconnectTimeout; aborted: at once", async () => {
    const watcher = await LongPolling.open(origin, "watcher");
    const gone = await LongPolling.open(origin, "gone");
    const idleFrom = Date.now();
    // "gone" sends no request from now on. The watcher hears of it only after 30 s.
    const left = await watcher.pollUntil((m) => m.M === "userLeft" && m.A[0] === "gone", "gone's userLeft", 50000);
    const after = (Date.now() - idleFrom) / 1000;
    assert(after >= 28 && after < 45, `userLeft after ${after} s`);
    void left;
    const quick = await LongPolling.open(origin, "quick");
    await watcher.pollUntil((m) => m.M === "userJoined" && m.A[0] === "quick", "quick's userJoined");
    await request(origin, "abort", { query: quick.query, method: "POST" });
    const t = Date.now();
    await watcher.pollUntil((m) => m.M === "userLeft" && m.A[0] === "quick", "quick's userLeft", 10000);
    assert((Date.now() - t) / 1000 < 5, `userLeft after abort took ${(Date.now() - t) / 1000} s`);
  });
}
process.exit(failed() ? 1 : 0);
