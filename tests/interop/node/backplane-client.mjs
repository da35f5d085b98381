// One official @microsoft/signalr client for the multi-node (Redis backplane) tests, driven
// over stdin and reporting over stdout, one JSON object per line.
//
//   node backplane-client.mjs HUB_URL [json|msgpack] [ws|sse|lp]
//
// stdout: {"event":"connected","connectionId":…} once connected, then
//         {"method":"broadcastMessage","args":[…],"headers":…} per invocation received, and
//         {"reply":ID,"ok":true,"result":…} / {"reply":ID,"ok":false,"error":…} per command.
// stdin:  {"id":ID,"invoke":"JoinRoom","args":["r"]} … ; end of input closes the connection.
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import * as readline from "node:readline";

const [hubUrl, protocol = "json", transportName = "ws"] = process.argv.slice(2);
const transports = {
  ws: signalR.HttpTransportType.WebSockets,
  sse: signalR.HttpTransportType.ServerSentEvents,
  lp: signalR.HttpTransportType.LongPolling,
};
if (!hubUrl || !(transportName in transports)) {
  console.error("usage: node backplane-client.mjs HUB_URL [json|msgpack] [ws|sse|lp]");
  process.exit(2);
}
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const builder = new signalR.HubConnectionBuilder()
  .withUrl(hubUrl, { transport: transports[transportName] })
  .configureLogging(signalR.LogLevel.None);
if (protocol === "msgpack") builder.withHubProtocol(new MessagePackHubProtocol());
const conn = builder.build();
for (const method of ["broadcastMessage", "roomMessage", "directMessage", "userJoined", "userLeft"]) {
  conn.on(method, (...args) => out({ method, args }));
}
conn.onclose((e) => out({ event: "closed", error: e ? String(e.message || e) : null }));
await conn.start();
out({ event: "connected", connectionId: conn.connectionId });

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    const result = await conn.invoke(cmd.invoke, ...(cmd.args || []));
    out({ reply: cmd.id, ok: true, result: result ?? null });
  } catch (e) {
    out({ reply: cmd.id, ok: false, error: String(e.message || e) });
  }
}
await conn.stop();
process.exit(0);
