// The official client as a receiver, for the side-by-side client benchmark:
//   node bench-client.mjs HUB_URL MESSAGES INVOKES [json|msgpack]
// Prints one JSON object: messages/s decoded and dispatched, the client's CPU time per message
// over the flood (process.cpuUsage: user + system), invoke round-trip p50/p99.
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const [url, messagesArg, invokesArg, protocol = "json"] = process.argv.slice(2);
const messages = Number(messagesArg), invokes = Number(invokesArg);
const builder = new signalR.HubConnectionBuilder()
  .withUrl(url, { transport: signalR.HttpTransportType.WebSockets, skipNegotiation: false })
  .configureLogging(signalR.LogLevel.None);
if (protocol === "msgpack") builder.withHubProtocol(new MessagePackHubProtocol());
const conn = builder.build();
let received = 0, last = 0;
conn.on("broadcastMessage", (name, text) => { if (typeof text === "string" && ++received === messages) last = performance.now(); });
await conn.start();
const start = performance.now();
const cpuStart = process.cpuUsage();
await conn.invoke("Flood", messages, 16);
const deadline = Date.now() + 120000;
while (received < messages) {
  if (Date.now() > deadline) { console.error(`only ${received} of ${messages} arrived`); process.exit(1); }
  await new Promise((r) => setTimeout(r, 5));
}
const cpu = process.cpuUsage(cpuStart);
const seconds = (last - start) / 1000;
const rtts = [];
for (let i = 0; i < invokes; i++) {
  const t = performance.now();
  await conn.invoke("Echo", i);
  rtts.push(performance.now() - t);
}
rtts.sort((a, b) => a - b);
const pct = (p) => rtts[Math.round((rtts.length - 1) * p)];
await conn.stop();
console.log(JSON.stringify({
  scenario: "client", client: "@microsoft/signalr " + (await import("@microsoft/signalr/package.json", { with: { type: "json" } })).default.version,
  protocol, messages, messagesPerSecond: messages / seconds, cpuUsPerMessage: (cpu.user + cpu.system) / messages, invokes, invokeP50Ms: pct(0.5), invokeP99Ms: pct(0.99),
}));
