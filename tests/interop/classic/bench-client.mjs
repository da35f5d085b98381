// node-signalr (npm, an independent classic ASP.NET SignalR 2.x client) as a receiver, for the
// side-by-side client benchmark on a classic stream:
//   node bench-client.mjs HUB_ORIGIN MESSAGES INVOKES
// Prints one JSON object: messages/s decoded and dispatched, the client's CPU time per message
// over the flood (process.cpuUsage: user + system), invoke round-trip p50/p99.
import { Client } from "node-signalr";
import { readFileSync } from "node:fs";

const [origin, messagesArg, invokesArg] = process.argv.slice(2);
const messages = Number(messagesArg), invokes = Number(invokesArg);
const client = new Client(`${origin}/signalr`, ["chatHub"]);
client.qs = { name: "bench-node-signalr", scope: "bench-classic-client" };
client.callTimeout = 60000;
let received = 0, last = 0;
client.connection.hub.on("chatHub", "broadcastMessage", (name, text) => { if (typeof text === "string" && ++received === messages) last = performance.now(); });
const connected = new Promise((resolve, reject) => {
  client.on("connected", resolve);
  client.on("error", (e) => reject(new Error(`${e.code}: ${e.message}`)));
  setTimeout(() => reject(new Error("not connected within 20 s")), 20000);
});
client.start();
await connected;
const start = performance.now();
const cpuStart = process.cpuUsage();
await client.connection.hub.call("chatHub", "Flood", messages, 16);
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
  await client.connection.hub.call("chatHub", "Echo", i);
  rtts.push(performance.now() - t);
}
rtts.sort((a, b) => a - b);
const pct = (p) => rtts[Math.round((rtts.length - 1) * p)];
client.end();
const version = JSON.parse(readFileSync(new URL("./node_modules/node-signalr/package.json", import.meta.url))).version;
console.log(JSON.stringify({
  scenario: "client", client: `node-signalr ${version}`, family: "classic",
  protocol: "classic", messages, messagesPerSecond: messages / seconds, cpuUsPerMessage: (cpu.user + cpu.system) / messages, invokes, invokeP50Ms: pct(0.5), invokeP99Ms: pct(0.99),
}));
process.exit(0);
