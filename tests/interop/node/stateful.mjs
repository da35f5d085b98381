// The official client's stateful reconnect against a Hubbub hub: its socket is cut (through a
// TCP proxy this script runs) in the middle of a stream of broadcasts, and it must resume on a
// new socket with the same connection, losing and doubling nothing, firing no reconnect events.
//   node stateful.mjs HUB_URL
import net from "node:net";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import { failed, scenario, sleep } from "../report.mjs";

const hubUrl = new URL(process.argv[2]);
const sockets = new Set();
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(hubUrl.port), "127.0.0.1");
  sockets.add(client); sockets.add(upstream);
  client.pipe(upstream); upstream.pipe(client);
  const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
  client.on("error", end); upstream.on("error", end); client.on("close", end); upstream.on("close", end);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
const cut = () => { for (const s of sockets) s.destroy(); sockets.clear(); };
const proxied = `http://127.0.0.1:${proxy.address().port}${hubUrl.pathname}`;

for (const protocol of ["json", "msgpack"]) {
  await scenario("a socket cut twice mid-stream: resumed, nothing lost or doubled, no events", async () => {
    const scope = `stateful-${protocol}-${Date.now()}`;
    const mk = (url, name, stateful) => {
      const b = new signalR.HubConnectionBuilder()
        .withUrl(`${url}?name=${name}&scope=${scope}`, { transport: signalR.HttpTransportType.WebSockets })
        .configureLogging(signalR.LogLevel.None);
      if (stateful) b.withStatefulReconnect();
      if (protocol === "msgpack") b.withHubProtocol(new MessagePackHubProtocol());
      return b.build();
    };
    const ann = mk(proxied, "ann", true);
    const bob = mk(`http://127.0.0.1:${hubUrl.port}${hubUrl.pathname}`, "bob", false);
    const annGot = [], bobGot = [];
    let reconnectEvents = 0;
    ann.onreconnecting(() => reconnectEvents++);
    ann.onreconnected(() => reconnectEvents++);
    ann.on("broadcastMessage", (name, text) => { if (name === "bob") annGot.push(text); });
    bob.on("broadcastMessage", (name, text) => { if (name === "ann") bobGot.push(text); });
    await ann.start();
    await bob.start();
    const id = ann.connectionId;
    for (let i = 0; i < 60; i++) {
      await bob.invoke("Send", "bob", `m${i}`);
      if (i === 20) {
        cut();
        // Sent while the socket is down: buffered, then replayed on the new socket.
        ann.send("Send", "ann", "while cut").catch(() => {});
      }
      if (i === 40) cut();
    }
    const deadline = Date.now() + 10000;
    while ((annGot.length < 60 || bobGot.length < 1) && Date.now() < deadline) await sleep(20);
    await sleep(300);
    const expected = Array.from({ length: 60 }, (_, i) => `m${i}`);
    if (JSON.stringify(annGot) !== JSON.stringify(expected)) throw new Error(`ann got ${annGot.length}: ${JSON.stringify(annGot)}`);
    if (JSON.stringify(bobGot) !== '["while cut"]') throw new Error(`bob got ${JSON.stringify(bobGot)}`);
    if (reconnectEvents !== 0) throw new Error(`${reconnectEvents} reconnect events fired`);
    if (ann.connectionId !== id || ann.state !== "Connected") throw new Error(`connection changed: ${ann.state} ${ann.connectionId} vs ${id}`);
    await ann.stop();
    await bob.stop();
  }, { protocol });
}
proxy.close();
process.exit(failed() ? 1 : 0);
