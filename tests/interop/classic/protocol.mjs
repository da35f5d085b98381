// The classic endpoint on the wire, as a 2.4.3 server answers (§8a), with plain HTTP and
// WebSocket requests: negotiate, tokens (400 missing or forged, 403 another user's), foreverFrame
// refused, bad input answered with a clear error, long polling's connect/start/send/poll/abort,
// the groups token, caller state. With --jwt SECRET the hub requires HS256 JWTs: every
// request is checked (access_token query or Authorization header). One JSON line per scenario.
//
//   node protocol.mjs HUB_ORIGIN [--jwt SECRET]
import crypto from "node:crypto";
import WebSocket from "ws";
import { assert, failed, scenario } from "./wire.mjs";

const origin = process.argv[2];
const jwtIndex = process.argv.indexOf("--jwt");
const secret = jwtIndex > 0 ? process.argv[jwtIndex + 1] : undefined;
if (!origin) {
  console.error("usage: node protocol.mjs HUB_ORIGIN [--jwt SECRET]");
  process.exit(2);
}
const b64url = (b) => Buffer.from(b).toString("base64url");
function jwt(sub) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = crypto.createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${sig}`;
}


const cd = JSON.stringify([{ name: "chathub" }]);
// Who a request comes from: a name without auth, a JWT with it (`via` "query" or "header").
function who(user, via = "query") {
  if (!secret) return { query: { name: user }, headers: {} };
  const token = jwt(user);
  return via === "header"
    ? { query: {}, headers: { Authorization: `Bearer ${token}` } }
    : { query: { access_token: token }, headers: {} };
}
async function request(path, { query = {}, method = "GET", body, headers = {} } = {}) {
  const url = `${origin}/signalr/${path}?${new URLSearchParams(query)}`;
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = new URLSearchParams(body).toString();
    init.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8";
  }
  const res = await fetch(url, init);
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
}
async function negotiate(user, clientProtocol = "2.1", via) {
  const w = who(user, via);
  const res = await request("negotiate", { query: { clientProtocol, connectionData: cd, ...w.query }, headers: w.headers });
  assert(res.status === 200, `negotiate: ${res.status} ${res.text}`);
  return JSON.parse(res.text);
}
function params(n, user, transport = "longPolling", via) {
  const w = who(user, via);
  return { query: { transport, clientProtocol: "2.1", connectionToken: n.ConnectionToken, connectionData: cd, ...w.query }, headers: w.headers };
}

await scenario("negotiate answers as a 2.4.3 server: keys in order, ProtocolVersion clamped", async () => {
  const res = await request("negotiate", { query: { clientProtocol: "2.1", connectionData: cd, ...who("pat").query }, headers: who("pat").headers });
  assert(res.type.startsWith("application/json"), res.type);
  const keys = Object.keys(JSON.parse(res.text));
  assert(JSON.stringify(keys) === JSON.stringify(["Url", "ConnectionToken", "ConnectionId", "KeepAliveTimeout", "DisconnectTimeout", "ConnectionTimeout", "TryWebSockets", "ProtocolVersion", "TransportConnectTimeout", "LongPollDelay"]), keys.join());
  assert(/"KeepAliveTimeout":20\.0,"DisconnectTimeout":30\.0,"ConnectionTimeout":110\.0,"TryWebSockets":true,"ProtocolVersion":"2\.0","TransportConnectTimeout":5\.0,"LongPollDelay":0\.0}$/.test(res.text), res.text);
  assert((await negotiate("pat", "1.5")).ProtocolVersion === "1.5", "1.5");
  assert((await negotiate("pat", "1.0")).ProtocolVersion === "1.2", "1.0 → 1.2");
});

await scenario("long polling: connect, start, send, poll, caller state, abort", async () => {
  const n = await negotiate("lee", "2.1", "header");
  const p = params(n, "lee", "longPolling", "header");
  const init = await request("connect", { ...p, method: "POST" });
  assert(init.status === 200, `connect ${init.status} ${init.text}`);
  const env = JSON.parse(init.text);
  assert(env.S === 1 && Array.isArray(env.M) && env.M.length === 0 && typeof env.C === "string", init.text);
  const start = await request("start", p);
  assert(start.text === '{ "Response": "started" }', start.text);
  const sent = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chatHub", M: "Send", A: ["lee", "hi"], I: 0, S: { mood: "ok" } }) } });
  // No "S": a 2.4.3 hub sends back only the caller state its method changed
  // (StateChangeTracker.GetChanges() is null when nothing changed), and this one changes none.
  assert(sent.text === '{"I":"0"}', `send result: ${sent.text}`);
  const polled = await request("poll", { ...p, method: "POST", body: { messageId: env.C } });
  const got = JSON.parse(polled.text);
  assert(got.M.some((m) => m.H === "ChatHub" && m.M === "broadcastMessage" && JSON.stringify(m.A) === '["lee","hi"]'), polled.text);
  assert(typeof got.G === "string", `a groups token comes with the first groups: ${polled.text}`);
  // The same cursor again: the same messages (nothing is lost before the client acknowledges
  // by polling past it).
  const again = JSON.parse((await request("poll", { ...p, method: "POST", body: { messageId: env.C } })).text);
  assert(JSON.stringify(again.M) === JSON.stringify(got.M), "replay from the same cursor");
  // A poll held open answers when a message comes.
  const held = request("poll", { ...p, method: "POST", body: { messageId: got.C } });
  await new Promise((r) => setTimeout(r, 200));
  await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "ChatHub", M: "send", A: ["lee", "later"], I: 1 }) } });
  const later = JSON.parse((await held).text);
  assert(later.M.length === 1 && later.M[0].A[1] === "later", JSON.stringify(later));
  // abort: a poll waiting now returns with an empty body; the connection is gone.
  const waiting = request("poll", { ...p, method: "POST", body: { messageId: later.C } });
  await new Promise((r) => setTimeout(r, 200));
  const aborted = await request("abort", { ...p, method: "POST" });
  assert(aborted.status === 200 && aborted.text === "", `abort: ${aborted.status} ${aborted.text}`);
  const ended = await waiting;
  assert(ended.status === 200 && ended.text === "", `the waiting poll after abort: ${ended.text}`);
  const afterwards = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "ChatHub", M: "send", A: ["lee", "x"], I: 2 }) } });
  assert(afterwards.status === 400, `send after abort: ${afterwards.status}`);
  // A poll still on its way after the abort is answered at once, empty, and does not open the
  // connection again (no user back online for the disconnect timeout).
  const late = await request("poll", { ...p, method: "POST", body: { messageId: later.C } });
  assert(late.status === 200 && late.text === "", `a poll after abort: ${late.status} ${late.text}`);
  const still = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "ChatHub", M: "send", A: ["lee", "x"], I: 3 }) } });
  assert(still.status === 400, `send after the late poll: ${still.status}`);
});

await scenario("tokens: missing 400, forged 400, another user's 403", async () => {
  const n = await negotiate("mo");
  const p = params(n, "mo");
  const missing = await request("start", { query: { ...p.query, connectionToken: "" }, headers: p.headers });
  assert(missing.status === 400 && /connection token/i.test(missing.text), `missing: ${missing.status} ${missing.text}`);
  const raw = Buffer.from(n.ConnectionToken, "base64");
  raw[raw.length - 1] ^= 1;
  const forged = await request("start", { query: { ...p.query, connectionToken: raw.toString("base64") }, headers: p.headers });
  assert(forged.status === 400, `forged: ${forged.status} ${forged.text}`);
  const other = params(n, "not-mo");
  const stolen = await request("connect", { ...other, method: "POST" });
  assert(stolen.status === 403, `another user's token: ${stolen.status} ${stolen.text}`);
});

await scenario("bad input gets a clear error and the connection keeps working", async () => {
  const n = await negotiate("kim");
  const p = params(n, "kim");
  const ff = await request("connect", { query: { ...p.query, transport: "foreverFrame" }, headers: p.headers });
  assert(ff.status === 400 && /foreverFrame/.test(ff.text), `foreverFrame: ${ff.status} ${ff.text}`);
  const unknownTransport = await request("connect", { query: { ...p.query, transport: "pigeons" }, headers: p.headers });
  assert(unknownTransport.status === 400, `unknown transport: ${unknownTransport.status}`);
  const badHub = await request("connect", { query: { ...p.query, connectionData: JSON.stringify([{ name: "nohub" }]) }, headers: p.headers, method: "POST" });
  assert(badHub.status === 400 && /'nohub' Hub could not be resolved/.test(badHub.text), badHub.text);
  const init = JSON.parse((await request("connect", { ...p, method: "POST" })).text);
  await request("start", p);
  const notJson = await request("send", { ...p, method: "POST", body: { data: "{not json" } });
  assert(notJson.status === 400 && /hub request/.test(notJson.text), `bad JSON: ${notJson.status} ${notJson.text}`);
  const noData = await request("send", { ...p, method: "POST", body: { other: "x" } });
  assert(noData.status === 400 && /data/.test(noData.text), `no data: ${noData.text}`);
  const badEscape = await fetch(`${origin}/signalr/send?${new URLSearchParams(p.query)}`, { method: "POST", headers: { ...p.headers, "Content-Type": "application/x-www-form-urlencoded" }, body: "data=%zz" });
  assert(badEscape.status === 400, `bad escape: ${badEscape.status}`);
  const huge = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chatHub", M: "Echo", A: ["x".repeat(40000)], I: 9 }) } });
  assert(huge.status === 400 && /maximum message size/.test(huge.text), `oversized: ${huge.status} ${huge.text}`);
  const badCursor = await request("poll", { ...p, method: "POST", body: { messageId: "not a cursor" } });
  assert(badCursor.status === 400, `bad cursor: ${badCursor.status}`);
  const noHub = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "nohub", M: "x", A: [], I: 3 }) } });
  assert(noHub.text === `{"I":"3","E":"'nohub' Hub could not be resolved."}`, noHub.text);
  const noMethod = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chathub", M: "Nope", A: [], I: 4 }) } });
  assert(/"E":"'Nope' method could not be resolved/.test(noMethod.text), noMethod.text);
  const hubError = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chathub", M: "SendToRoom", A: ["r", "kim", "x"], I: 5 }) } });
  assert(hubError.text === `{"I":"5","H":true,"E":"Join the room 'r' before sending to it.","D":{"room":"r"}}`, hubError.text);
  const fine = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chathub", M: "Echo", A: ["still here"], I: 6 }) } });
  assert(fine.text === `{"R":"still here","I":"6"}`, fine.text);
  void init;
});

await scenario("webSockets: init message, results over the socket, keep-alive shape, malformed input closes with a reason", async () => {
  const n = await negotiate("wes");
  const p = params(n, "wes", "webSockets");
  const url = `${origin.replace("http", "ws")}/signalr/connect?${new URLSearchParams(p.query)}`;
  const ws = new WebSocket(url, { headers: p.headers });
  const frames = [];
  const closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve([code, String(reason)])));
  ws.on("message", (d) => frames.push(String(d)));
  await new Promise((resolve, reject) => { ws.on("open", resolve); ws.on("error", reject); });
  const until = async (pred, what) => {
    const start = Date.now();
    while (!frames.some(pred)) {
      if (Date.now() - start > 5000) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(frames)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await until((f) => JSON.parse(f).S === 1, "the init message");
  assert((await request("start", p)).text === '{ "Response": "started" }', "start");
  ws.send(JSON.stringify({ H: "chatHub", M: "Echo", A: [42], I: "7" }));
  await until((f) => f === '{"R":42,"I":"7"}', "the result");
  ws.send("{broken");
  const [code, reason] = await closed;
  assert(code === 1007 && /malformed/.test(reason), `close: ${code} ${reason}`);
});

if (secret) {
  await scenario("auth: every classic request needs a valid JWT", async () => {
    const none = await request("negotiate", { query: { clientProtocol: "2.1", connectionData: cd } });
    assert(none.status === 401, `negotiate without a token: ${none.status}`);
    const n = await negotiate("ana");
    const p = params(n, "ana");
    const noToken = { ...p.query };
    delete noToken.access_token;
    for (const [path, method] of [["connect", "POST"], ["start", "GET"], ["send", "POST"], ["poll", "POST"], ["abort", "POST"], ["ping", "GET"]]) {
      const res = await request(path, { query: noToken, method });
      assert(res.status === 401, `${path} without a token: ${res.status}`);
    }
    const bad = await request("start", { query: { ...noToken, access_token: "x.y.z" } });
    assert(bad.status === 401, `bad token: ${bad.status}`);
    // Another user's JWT with ana's connection token: 403.
    const other = await request("connect", { query: { ...noToken, access_token: jwt("eve") }, method: "POST" });
    assert(other.status === 403, `eve with ana's connection: ${other.status}`);
    assert((await request("connect", { ...p, method: "POST" })).status === 200, "ana connects");
    assert((await request("start", p)).status === 200, "ana starts");
    const me = await request("send", { ...p, method: "POST", body: { data: JSON.stringify({ H: "chatHub", M: "GetOnline", A: [], I: 0 }) } });
    assert(/"name":"ana"/.test(me.text), `the user is the token's subject: ${me.text}`);
    await request("abort", { ...p, method: "POST" });
  });
}

process.exit(failed() ? 1 : 0);
