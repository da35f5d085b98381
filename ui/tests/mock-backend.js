// A believable stand-in for the Rust shell, injected before the page loads (page.addInitScript).
// It installs window.__TAURI_INTERNALS__ (what @tauri-apps/api/core's invoke and Channel use),
// answers every command of ui/IPC.md from in-memory state, and pushes events through the
// Channel handed to `subscribe`. Tests steer it through window.__mock.
//
// Configuration: window.__HUBBUB_MOCK_CONFIG__ (set by an earlier init script), see `defaults`.
(() => {
  const config = Object.assign(
    {
      /** Start with no accounts (first run with nothing added: the connect screen). */
      empty: false,
      /** Messages in the first account's broadcast history. */
      history: 40,
      /** A second hub. */
      secondAccount: false,
      /** ms before a sent message is acknowledged. */
      sendDelay: 250,
      /** ms the mock takes to "connect". */
      connectDelay: 300,
      /** ms the `online` command takes to answer. */
      onlineDelay: 0,
      /** A user who joins while `online` is answering. */
      joinWhileOnline: null,
      keychain: true,
    },
    window.__HUBBUB_MOCK_CONFIG__ || {},
  );

  const NOW = Date.now();
  const callbacks = new Map();
  const calls = [];
  let channelId = null;
  let channelIndex = 0;
  let nextAccountId = 1;

  function status(state, extra) {
    return Object.assign(
      { state, attempt: null, nextRetryAt: null, reason: null, slow: null, transport: state === "connected" ? "WebSockets" : null, family: null },
      extra || {},
    );
  }

  /** id -> { account, conversations: Map<key, conv>, logs: Map<key, Message[]>, online: string[], nextSeq } */
  const hubs = new Map();

  function newHub(fields, opts) {
    const id = nextAccountId++;
    const account = Object.assign(
      {
        id,
        url: "",
        displayName: "alice",
        protocol: "json",
        transport: "auto",
        family: "auto",
        hubName: null,
        caPem: null,
        local: true,
        token: "none",
        status: status("connected"),
        methods: { preset: "auto", send: null, receive: [] },
        unavailable: [],
      },
      fields,
    );
    const hub = {
      account,
      conversations: new Map([["broadcast", { key: "broadcast", kind: "broadcast", name: "Everyone", unread: 0 }]]),
      logs: new Map([["broadcast", []]]),
      online: [account.displayName].concat((opts && opts.online) || []),
      nextSeq: 1,
    };
    hubs.set(id, hub);
    return hub;
  }

  function addConversation(hub, key, unread) {
    const kind = key.startsWith("room:") ? "room" : key.startsWith("dm:") ? "direct" : "broadcast";
    const name = kind === "broadcast" ? "Everyone" : key.slice(key.indexOf(":") + 1);
    let c = hub.conversations.get(key);
    if (!c) {
      c = { key, kind, name, unread: unread || 0 };
      hub.conversations.set(key, c);
      hub.logs.set(key, []);
    }
    return c;
  }

  const SENDERS = ["bob", "carol", "dave", "erin", "alice"];
  function storeMessage(hub, key, fields) {
    addConversation(hub, key);
    const m = Object.assign(
      {
        seq: hub.nextSeq++,
        id: `m-${hub.account.id}-${hub.nextSeq}-${Math.random().toString(36).slice(2, 8)}`,
        conversation: key,
        sender: "bob",
        body: "",
        outgoing: false,
        state: "received",
        error: null,
        createdAt: Date.now(),
      },
      fields,
    );
    hub.logs.get(key).push(m);
    return m;
  }

  function seedHistory(hub, key, n) {
    const log = hub.logs.get(key) || (addConversation(hub, key), hub.logs.get(key));
    const me = hub.account.displayName;
    for (let i = 1; i <= n; i++) {
      const sender = SENDERS[i % SENDERS.length] === "alice" ? me : SENDERS[i % SENDERS.length];
      let body = `History message ${i}`;
      if (i % 7 === 0) body += "\nwith a second line";
      if (i % 13 === 0) body += " — " + "a longer message that wraps onto more lines in narrow windows ".repeat(2).trim();
      log.push({
        seq: hub.nextSeq++,
        id: `h-${hub.account.id}-${key}-${i}`,
        conversation: key,
        sender,
        body,
        outgoing: sender === me,
        state: sender === me ? "sent" : "received",
        error: null,
        createdAt: NOW - (n - i + 1) * 45_000,
      });
    }
  }

  if (!config.empty) {
    const a = newHub({ displayName: "alice", local: true, url: "" }, { online: ["bob", "carol"] });
    seedHistory(a, "broadcast", config.history);
    addConversation(a, "room:general");
    storeMessage(a, "room:general", { sender: "carol", body: "Welcome to #general", createdAt: NOW - 3_600_000 });
    addConversation(a, "dm:bob");
    storeMessage(a, "dm:bob", { sender: "bob", body: "hey alice", createdAt: NOW - 1_800_000 });
    if (config.secondAccount) {
      const b = newHub(
        { displayName: "zoe", local: false, url: "https://chat.example.com/hub", token: "keychain", status: status("connected") },
        { online: ["yann"] },
      );
      seedHistory(b, "broadcast", 5);
    }
  }

  // ---- the channel ----------------------------------------------------------------------------

  function emit(event) {
    if (channelId === null) return;
    const cb = callbacks.get(channelId);
    const index = channelIndex++;
    // Delivered asynchronously, like the real IPC.
    setTimeout(() => cb && cb({ index, message: JSON.parse(JSON.stringify(event)) }), 0);
  }

  /**
   * A CA as the core keeps it: blank is none; PEM blocks whose bodies are base64 (the core also
   * parses each certificate; here a body of `AAAA` stands for one that does not parse).
   */
  function checkedCa(text) {
    const pem = text == null ? "" : String(text).trim();
    if (!pem) return null;
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g) || [];
    const bad = blocks.length === 0 || blocks.some((b) => {
      const body = b.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s/g, "");
      return !/^[A-Za-z0-9+/=]+$/.test(body) || body === "AAAA";
    });
    if (bad) throw { kind: "invalid", message: "the extra CA certificates cannot be used: no valid certificate in it: paste the CA's certificate in PEM form (-----BEGIN CERTIFICATE----- …)" };
    return pem;
  }

  /** The family a connection would speak: forced, or (auto) classic on a …/signalr address. */
  function familyFound(account) {
    if (account.family !== "auto") return account.family;
    return /\/signalr\/?$/.test(account.url) ? "classic" : "core";
  }

  function setStatus(id, patch) {
    const hub = hubs.get(id);
    hub.account.status = Object.assign({}, status(patch.state || hub.account.status.state), patch);
    emit({ type: "status", account: id, status: hub.account.status });
  }

  function accountsEvent() {
    emit({ type: "accounts", accounts: Array.from(hubs.values()).map((h) => h.account) });
  }

  function conversationEvent(hub, c) {
    emit({ type: "conversation", account: hub.account.id, conversation: c });
  }

  const pendingTimers = new Set();
  function later(ms, fn) {
    const t = setTimeout(() => {
      pendingTimers.delete(t);
      fn();
    }, ms);
    pendingTimers.add(t);
  }

  const control = {
    calls,
    failNext: null,
    hold: false,
    held: [],
    /** Commands whose answers wait for `answer(cmd)` (each answer is the state when called). */
    holding: [],
    waiting: [],
    /** Commands answered so far (as `calls`, in the order the answers went back). */
    answered: [],
    callsOf(cmd) {
      return calls.filter((c) => c.cmd === cmd);
    },
    answersOf(cmd) {
      return control.answered.filter((c) => c.cmd === cmd);
    },
    /** Lets the held answers of a command go; returns how many there were. */
    answer(cmd) {
      const go = control.waiting.filter((w) => w.cmd === cmd);
      control.waiting = control.waiting.filter((w) => w.cmd !== cmd);
      for (const w of go) w.go();
      return go.length;
    },
    emit,
    setStatus,
    hub(id) {
      return hubs.get(id);
    },
    /** A message from someone else arrives (and counts as unread until mark_read). */
    receive(accountId, key, sender, body) {
      const hub = hubs.get(accountId);
      const m = storeMessage(hub, key, { sender, body });
      const c = hub.conversations.get(key);
      c.unread += 1;
      emit({ type: "message", account: accountId, message: m });
      conversationEvent(hub, c);
      return m;
    },
    presence(accountId, user, joined) {
      const hub = hubs.get(accountId);
      hub.online = joined ? Array.from(new Set(hub.online.concat(user))) : hub.online.filter((u) => u !== user);
      emit({ type: "presence", account: accountId, user, joined, online: hub.online.slice() });
    },
    /** The hub sends an invocation (shown in the inspector). */
    inspect(accountId, target, args, chat) {
      emit({ type: "inspector", account: accountId, entry: { kind: "invocation", atMs: Date.now(), target, arguments: args, chat: !!chat } });
    },
    /** The core found (or was told) the hub's methods, or found an extra missing. */
    hubMethods(accountId, methods, unavailable) {
      const hub = hubs.get(accountId);
      hub.account.methods = methods;
      hub.account.unavailable = unavailable;
      emit({ type: "hubMethods", account: accountId, methods, unavailable });
    },
    /** Acknowledges every held send. */
    release() {
      for (const f of control.held.splice(0)) f();
    },
  };
  window.__mock = control;

  // ---- commands ---------------------------------------------------------------------------------

  function reject(kind, message) {
    return Promise.reject({ kind, message });
  }

  function hubOf(args) {
    const hub = hubs.get(args.account);
    if (!hub) throw { kind: "unknownAccount", message: `no account ${args.account}` };
    return hub;
  }

  function acknowledge(hub, m) {
    const finish = () => {
      if (control.failNext) {
        m.state = "failed";
        m.error = control.failNext;
        control.failNext = null;
      } else {
        m.state = "sent";
        m.error = null;
      }
      emit({ type: "messageUpdated", account: hub.account.id, message: m });
    };
    if (control.hold) control.held.push(finish);
    else later(config.sendDelay, finish);
  }

  function connectHub(hub) {
    setStatus(hub.account.id, { state: "connecting", transport: null });
    later(config.connectDelay, () => {
      if (hub.account.status.state === "connecting") setStatus(hub.account.id, { state: "connected", transport: "WebSockets" });
    });
  }

  const handlers = {
    app_info: () => ({
      version: "0.1.0",
      platform: "desktop",
      keychain: config.keychain ? { available: true, detail: null } : { available: false, detail: "no Secret Service on this session bus" },
      localHubUrl: "http://127.0.0.1:5170/hub",
    }),
    subscribe: (args) => {
      channelId = args.onEvent.id;
      channelIndex = 0;
      return null;
    },
    list_accounts: () => Array.from(hubs.values()).map((h) => h.account),
    add_account: ({ input }) => {
      if (!input || typeof input.displayName !== "string" || !input.displayName) throw { kind: "invalid", message: "a display name is needed" };
      if (input.url && input.url.includes("refuse")) throw { kind: "invalidUrl", message: "that hub refused the negotiation" };
      const hub = newHub(
        {
          url: input.url || "http://127.0.0.1:5170/hub",
          local: !input.url,
          displayName: input.displayName,
          protocol: input.protocol,
          transport: input.transport,
          family: input.family || "auto",
          hubName: input.hubName || null,
          caPem: checkedCa(input.caPem),
          token: input.token ? "keychain" : "none",
          status: status("connecting"),
        },
        { online: ["bob"] },
      );
      accountsEvent();
      later(config.connectDelay, () => setStatus(hub.account.id, { state: "connected", transport: "WebSockets", family: familyFound(hub.account) }));
      return hub.account;
    },
    remove_account: (args) => {
      hubOf(args);
      hubs.delete(args.account);
      accountsEvent();
      return null;
    },
    connect: (args) => {
      connectHub(hubOf(args));
      return null;
    },
    disconnect: (args) => {
      hubOf(args);
      setStatus(args.account, { state: "disconnected", reason: null, transport: null });
      return null;
    },
    set_token: (args) => {
      const hub = hubOf(args);
      hub.account.token = args.token ? "keychain" : "none";
      accountsEvent();
      return hub.account;
    },
    conversations: (args) => Array.from(hubOf(args).conversations.values()),
    history: (args) => {
      const log = hubOf(args).logs.get(args.conversation) || [];
      let end = log.length;
      if (args.before !== null && args.before !== undefined) {
        let lo = 0;
        let hi = log.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (log[mid].seq < args.before) lo = mid + 1;
          else hi = mid;
        }
        end = lo;
      }
      // As the core: at most 5,000 per call.
      return log.slice(Math.max(0, end - Math.min(args.limit, 5000)), end);
    },
    send: (args) => {
      const hub = hubOf(args);
      if (typeof args.text !== "string" || !args.text) throw { kind: "invalid", message: "empty message" };
      const m = storeMessage(hub, args.conversation, {
        sender: hub.account.displayName,
        body: args.text,
        outgoing: true,
        state: "sending",
      });
      emit({ type: "message", account: hub.account.id, message: m });
      acknowledge(hub, m);
      return Object.assign({}, m);
    },
    retry: (args) => {
      const hub = hubOf(args);
      const m = (hub.logs.get(args.conversation) || []).find((x) => x.id === args.id);
      if (!m) throw { kind: "notFound", message: "no such message" };
      m.state = "sending";
      m.error = null;
      emit({ type: "messageUpdated", account: hub.account.id, message: m });
      acknowledge(hub, m);
      return Object.assign({}, m);
    },
    discard: (args) => {
      const hub = hubOf(args);
      const log = hub.logs.get(args.conversation) || [];
      const i = log.findIndex((x) => x.id === args.id);
      if (i >= 0) log.splice(i, 1);
      return null;
    },
    join_room: (args) => {
      const hub = hubOf(args);
      const c = addConversation(hub, `room:${args.room}`);
      conversationEvent(hub, c);
      return c;
    },
    leave_room: (args) => {
      const hub = hubOf(args);
      hub.conversations.delete(`room:${args.room}`);
      return null;
    },
    open_direct: (args) => {
      const hub = hubOf(args);
      const c = addConversation(hub, `dm:${args.user}`);
      conversationEvent(hub, c);
      return c;
    },
    online: (args) => {
      // The list as it is now, answered `onlineDelay` ms later (a slow shell), with
      // `joinWhileOnline` joining meanwhile (its event arrives before the older answer).
      const list = hubOf(args).online.slice();
      if (!config.onlineDelay) return list;
      if (config.joinWhileOnline) later(10, () => control.presence(args.account, config.joinWhileOnline, true));
      return new Promise((r) => setTimeout(() => r(list), config.onlineDelay));
    },
    search: (args) => {
      const hub = hubOf(args);
      const q = String(args.query).toLowerCase();
      const found = [];
      for (const log of hub.logs.values()) for (const m of log) if (m.body.toLowerCase().includes(q)) found.push(m);
      found.sort((a, b) => b.seq - a.seq);
      return found.slice(0, args.limit);
    },
    mark_read: (args) => {
      const hub = hubOf(args);
      const c = hub.conversations.get(args.conversation);
      if (c && c.unread) {
        c.unread = 0;
        conversationEvent(hub, c);
      }
      return null;
    },
    lifecycle: () => null,
    set_methods: (args) => {
      const hub = hubOf(args);
      const m = args.methods;
      if (m.send && !/^[A-Za-z_][\w.-]*(\(.*\))?$/.test(m.send)) throw { kind: "invalid", message: `send method: '${m.send}': a method name is expected` };
      hub.account.methods = { preset: m.preset, send: m.send, receive: m.receive };
      return hub.account;
    },
    set_ca: (args) => {
      const hub = hubOf(args);
      hub.account.caPem = checkedCa(args.caPem);
      // The account reconnects with it.
      setStatus(hub.account.id, { state: "connecting" });
      later(config.connectDelay, () => setStatus(hub.account.id, { state: "connected", transport: "WebSockets", family: familyFound(hub.account) }));
      return hub.account;
    },
    set_family: (args) => {
      const hub = hubOf(args);
      if (!["auto", "core", "classic"].includes(args.family)) throw { kind: "invalid", message: `unknown variant \`${args.family}\`` };
      const name = args.hubName == null ? null : String(args.hubName).trim();
      if (name !== null && !/^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/.test(name)) throw { kind: "invalid", message: `"${name}" is not a hub name` };
      hub.account.family = args.family;
      hub.account.hubName = name;
      // The account reconnects with them.
      setStatus(hub.account.id, { state: "connecting" });
      later(config.connectDelay, () => setStatus(hub.account.id, { state: "connected", transport: "WebSockets", family: familyFound(hub.account) }));
      return hub.account;
    },
    invoke_hub: (args) => {
      hubOf(args);
      if (args.method === "Add") return args.arguments.reduce((a, b) => a + b, 0);
      if (args.method === "Fail") throw { kind: "client", message: "nope: Fail always fails" };
      throw { kind: "client", message: `Unknown hub method '${args.method}'` };
    },
  };

  async function invoke(cmd, args) {
    const recorded = {};
    for (const [k, v] of Object.entries(args || {})) recorded[k] = k === "onEvent" ? "<channel>" : v;
    const call = { cmd, args: JSON.parse(JSON.stringify(recorded)) };
    calls.push(call);
    await new Promise((r) => setTimeout(r, 2));
    const handler = handlers[cmd];
    if (!handler) return reject("unknownCommand", `no command ${cmd}`);
    let result;
    try {
      const out = await handler(args || {});
      result = out === undefined ? null : JSON.parse(JSON.stringify(out));
    } catch (e) {
      control.answered.push(call);
      return Promise.reject(e);
    }
    if (control.holding.includes(cmd)) await new Promise((go) => control.waiting.push({ cmd, go }));
    control.answered.push(call);
    return result;
  }

  let nextCallback = 1;
  window.__TAURI_INTERNALS__ = {
    invoke,
    transformCallback(cb, once) {
      const id = nextCallback++;
      callbacks.set(id, (data) => {
        if (once) callbacks.delete(id);
        return cb && cb(data);
      });
      return id;
    },
    unregisterCallback(id) {
      callbacks.delete(id);
    },
    convertFileSrc(path) {
      return path;
    },
    metadata: { currentWindow: { label: "main" }, currentWebview: { windowLabel: "main", label: "main" } },
  };
})();
