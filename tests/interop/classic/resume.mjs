// The groups token and the cursor when a long-polling classic client comes back to a node that
// does not know its connection (another node of a fleet sharing the classic key, or the same
// node restarted): the rooms its groups token names are restored, and every message of the new
// connection reaches it (its old cursor counted another node's messages).
//
//   node resume.mjs join ORIGIN USER          connects, joins a room, chats; prints its state
//   node resume.mjs resume ORIGIN USER STATE [--without-groups]
//                                            reconnects there with that state; checks the room
import { LongPolling, assert, failed, scenario } from "./wire.mjs";

const [step, origin, user, state] = process.argv.slice(2);
const withoutGroups = process.argv.includes("--without-groups");
// A room of its own per user: the node left behind keeps the old connection for a while.
const room = `r-${user}`;
if (!origin || !user || (step !== "join" && step !== "resume")) {
  console.error("usage: node resume.mjs join|resume ORIGIN USER [STATE] [--without-groups]");
  process.exit(2);
}

if (step === "join") {
  await scenario("join a room and chat, keeping the cursor and groups token", async () => {
    const me = await LongPolling.open(origin, user);
    const joined = await me.call("JoinRoom", room);
    assert(joined.R === 1, `JoinRoom: ${JSON.stringify(joined)}`);
    // Enough messages that the cursor is well ahead of a new connection's first numbers.
    for (let i = 0; i < 20; i++) await me.call("Send", user, `before ${i}`);
    await me.pollUntil((m) => m.M === "broadcastMessage" && m.A[1] === "before 19", "the last broadcast");
    assert(typeof me.groups === "string", "a groups token came");
    console.log(`state ${JSON.stringify({ token: me.token, cursor: me.cursor, groups: me.groups })}`);
  });
} else {
  const name = withoutGroups
    ? "back without a groups token: not in the room, yet every new message arrives"
    : "back on a node that does not know the connection: the room is restored and nothing is skipped";
  await scenario(name, async () => {
    const saved = JSON.parse(state);
    const me = new LongPolling(origin, user, saved.token);
    me.cursor = saved.cursor;
    me.groups = withoutGroups ? undefined : saved.groups;
    // The reconnect request opens the connection here; it is held until messages come.
    const back = me.pollUntil((m) => m.M === "broadcastMessage" && m.A[1] === "marker", "the marker broadcast", 15000, "reconnect");
    const other = await LongPolling.open(origin, "sender");
    // Wait until the reconnect has opened the connection here (presence lists the user).
    const deadline = Date.now() + 10000;
    for (;;) {
      const online = (await other.call("GetOnline")).R;
      if (online.users.some((u) => u.name === user)) break;
      assert(Date.now() < deadline, `${user} never came online here: ${JSON.stringify(online)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const joined = await other.call("JoinRoom", room);
    assert(joined.R === (withoutGroups ? 1 : 2), `members of the room seen by the sender: ${joined.R}`);
    const sent = await other.call("SendToRoom", room, "sender", "in the room");
    assert(!sent.E, `SendToRoom: ${JSON.stringify(sent)}`);
    await other.call("Send", "sender", "marker");
    const seen = await back;
    const inRoom = seen.some((m) => m.M === "roomMessage" && m.A[2] === "in the room");
    assert(inRoom === !withoutGroups, `room message seen: ${inRoom}; saw ${JSON.stringify(seen)}`);
    assert(/^d-[0-9A-F]{8}-B,\d+$/.test(me.cursor) && me.cursor !== saved.cursor, `cursor: ${me.cursor}`);
  });
}
process.exit(failed() ? 1 : 0);
