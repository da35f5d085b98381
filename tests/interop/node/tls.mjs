// The official client over https:// and wss:// (the CA from NODE_EXTRA_CA_CERTS), every
// transport: connect, a broadcast back to itself, an echo, stop.
//   node tls.mjs HUB_URL
// Prints one JSON line per transport; exit code 1 if any failed.
import * as signalR from "@microsoft/signalr";
import { failed, scenario } from "../report.mjs";

const [hubUrl] = process.argv.slice(2);
for (const [label, transport] of [["ws", signalR.HttpTransportType.WebSockets], ["sse", signalR.HttpTransportType.ServerSentEvents], ["lp", signalR.HttpTransportType.LongPolling]]) {
  await scenario("connect, a broadcast back to itself, an echo, stop", async () => {
    const conn = new signalR.HubConnectionBuilder()
      .withUrl(`${hubUrl}?name=node-${label}`, { transport })
      .configureLogging(signalR.LogLevel.None)
      .build();
    const got = new Promise((resolve, reject) => {
      conn.on("broadcastMessage", (name, text) => { if (text === `over ${label}`) resolve(); });
      setTimeout(() => reject(new Error("no broadcast within 10 s")), 10000);
    });
    await conn.start();
    await conn.invoke("Send", `node-${label}`, `over ${label}`);
    await got;
    const echo = await conn.invoke("Echo", label);
    if (echo !== label) throw new Error(`echo: ${JSON.stringify(echo)}`);
    await conn.stop();
  }, { transport: label });
}
process.exit(failed() ? 1 : 0);
