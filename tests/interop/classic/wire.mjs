// Plain-HTTP classic requests for the wire-level scripts (no SignalR client library): one
// connection's negotiate/connect/start/send/poll, each request bounded in time.
import { assert, failed, scenario, sleep } from "../report.mjs";

export { assert, failed, scenario, sleep };

export const connectionData = JSON.stringify([{ name: "chathub" }]);

/** One request to `{origin}/signalr/{path}`; form fields in `body`; gives up after `limit` ms. */
export async function request(origin, path, { query = {}, method = "GET", body, limit = 15000 } = {}) {
  const url = `${origin}/signalr/${path}?${new URLSearchParams(query)}`;
  const init = { method, headers: {}, signal: AbortSignal.timeout(limit) };
  if (body !== undefined) {
    init.body = new URLSearchParams(body).toString();
    init.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8";
  }
  const res = await fetch(url, init);
  return { status: res.status, text: await res.text() };
}

/** A long-polling classic connection of user `name`, driven request by request. */
export class LongPolling {
  constructor(origin, name, token) {
    this.origin = origin;
    this.name = name;
    this.token = token;
    this.cursor = undefined;
    this.groups = undefined;
    this.next = 0;
  }
  get query() {
    return { transport: "longPolling", clientProtocol: "2.1", connectionToken: this.token, connectionData, name: this.name };
  }
  static async open(origin, name) {
    const n = await request(origin, "negotiate", { query: { clientProtocol: "2.1", connectionData, name } });
    assert(n.status === 200, `negotiate: ${n.status} ${n.text}`);
    const c = new LongPolling(origin, name, JSON.parse(n.text).ConnectionToken);
    const init = await request(origin, "connect", { query: c.query, method: "POST" });
    assert(init.status === 200, `connect: ${init.status} ${init.text}`);
    c.cursor = JSON.parse(init.text).C;
    const start = await request(origin, "start", { query: c.query });
    assert(start.text === '{ "Response": "started" }', `start: ${start.text}`);
    return c;
  }
  /** Calls a hub method; resolves with the parsed result `{I,R?,E?}`. */
  async call(method, ...args) {
    const I = this.next++;
    const res = await request(this.origin, "send", { query: this.query, method: "POST", body: { data: JSON.stringify({ H: "chatHub", M: method, A: args, I }) } });
    assert(res.status === 200, `${method}: ${res.status} ${res.text}`);
    return JSON.parse(res.text);
  }
  /** One poll (or, with `path` "reconnect", a reconnect) from the current cursor; keeps C and G. */
  async poll(path = "poll", limit = 15000) {
    const body = { messageId: this.cursor ?? "" };
    if (this.groups) body.groupsToken = this.groups;
    const res = await request(this.origin, path, { query: this.query, method: "POST", body, limit });
    assert(res.status === 200, `${path}: ${res.status} ${res.text}`);
    if (!res.text.trim()) return [];
    const env = JSON.parse(res.text);
    if (env.C) this.cursor = env.C;
    if (env.G) this.groups = env.G;
    return env.M ?? [];
  }
  /** Polls until `pred` holds for a message seen; returns every message seen. */
  async pollUntil(pred, what, limit = 15000, path = "poll") {
    const seen = [];
    const deadline = Date.now() + limit;
    while (!seen.some(pred)) {
      const left = deadline - Date.now();
      assert(left > 0, `timed out waiting for ${what}; saw ${JSON.stringify(seen)}`);
      seen.push(...(await this.poll(path, left)));
      path = "poll";
    }
    return seen;
  }
}
