// The official client against a hub that requires JWTs.
//   node auth.mjs HUB_URL GOOD_TOKEN BAD_TOKEN EXPECTED_USER
// Prints one JSON line per scenario; exit code 1 if any failed.
import * as signalR from "@microsoft/signalr";
import { failed, scenario } from "../report.mjs";

const [hubUrl, good, bad, expectedUser] = process.argv.slice(2);
const build = (transport, token) =>
  new signalR.HubConnectionBuilder()
    .withUrl(hubUrl, { transport, accessTokenFactory: () => token })
    .configureLogging(signalR.LogLevel.None)
    .build();

for (const [label, transport] of [["ws", signalR.HttpTransportType.WebSockets], ["lp", signalR.HttpTransportType.LongPolling], ["sse", signalR.HttpTransportType.ServerSentEvents]]) {
  await scenario(`${label}: a bad token is refused with 401`, async () => {
    const conn = build(transport, bad);
    let error = "";
    try { await conn.start(); } catch (e) { error = e.message; }
    if (!/401/.test(error)) throw new Error(`expected a 401, got: ${error || "a connection"}`);
  });
  await scenario(`${label}: no token is refused with 401`, async () => {
    const conn = new signalR.HubConnectionBuilder().withUrl(hubUrl, { transport }).configureLogging(signalR.LogLevel.None).build();
    let error = "";
    try { await conn.start(); } catch (e) { error = e.message; }
    if (!/401/.test(error)) throw new Error(`expected a 401, got: ${error || "a connection"}`);
  });
  await scenario(`${label}: a good token connects as its subject`, async () => {
    const conn = build(transport, good);
    await conn.start();
    const online = await conn.invoke("GetOnline");
    const names = online.users.map((u) => u.name);
    if (!names.includes(expectedUser)) throw new Error(`users: ${JSON.stringify(names)}`);
    await conn.stop();
  });
}
process.exit(failed() ? 1 : 0);
