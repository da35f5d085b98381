// The controller: turns shell events into store changes and user intents into commands.
// Views call the methods here; they never invoke commands themselves.

import * as api from "./api";
import type { Account, AccountId, AppEvent, ConversationKey, Message, NewAccount } from "./api";
import { AccountState, ConversationLog, Store } from "./store";

/** Messages per history page while scrolling. */
export const PAGE = 100;
/** Messages per page while paging back to a search result. */
const JUMP_PAGE = 5000;
/** The inspector keeps this many entries per account. */
const INSPECTOR_MAX = 500;

export type Pane = "list" | "chat";

export interface Notifier {
  /** A short-lived notice (presence, shell notices, command errors). */
  toast(text: string, level?: api.NoticeLevel): void;
  /** Read out by screen readers (polite). */
  announce(text: string): void;
}

export interface ListHost {
  /** The log the message list shows, or null when none. */
  shownLog(): ConversationLog | null;
  /** The reader sees the newest message of the shown log. */
  atBottom(): boolean;
  show(log: ConversationLog | null): void;
  invalidate(): void;
  scrollToMessage(id: string): void;
  scrollToBottom(): void;
  setLoadingOlder(loading: boolean): void;
}

export class App {
  readonly store = new Store();
  /** On narrow screens: which pane is shown. */
  pane: Pane = "chat";
  notifier: Notifier = { toast() {}, announce() {} };
  list: ListHost | null = null;
  private markTimer = 0;
  private channel: unknown = null;

  async start(): Promise<void> {
    this.channel = await api.subscribe((ev) => this.onEvent(ev));
    const [info, accounts] = await Promise.all([api.appInfo(), api.listAccounts()]);
    this.store.info = info;
    this.store.setAccounts(accounts);
    document.addEventListener("visibilitychange", () => {
      const foreground = document.visibilityState === "visible";
      api.lifecycle(foreground).catch(() => {});
      if (foreground) this.scheduleMarkRead();
    });
    if (accounts.length === 0) {
      this.showScreen("connect");
    } else {
      this.showScreen("chat");
      await this.selectAccount(this.store.currentAccount ?? accounts[0]!.id);
    }
  }

  /** Keeps the channel referenced for the app's lifetime. */
  get subscribed(): boolean {
    return this.channel !== null;
  }

  showScreen(screen: "connect" | "chat"): void {
    this.store.screen = screen;
    this.store.emit("view");
  }

  setPane(pane: Pane): void {
    if (this.pane !== pane) {
      this.pane = pane;
      this.store.emit("view");
    }
  }

  // ---- events from the shell -----------------------------------------------------------------

  private onEvent(ev: AppEvent): void {
    const s = this.store;
    switch (ev.type) {
      case "accounts": {
        const before = s.currentAccount;
        s.setAccounts(ev.accounts);
        if (ev.accounts.length === 0) {
          this.list?.show(null);
          this.showScreen("connect");
        } else if (s.currentAccount !== before && s.currentAccount !== null) {
          void this.selectAccount(s.currentAccount);
        }
        break;
      }
      case "status":
        s.setStatus(ev.account, ev.status);
        break;
      case "message":
        this.onMessage(ev.account, ev.message, true);
        break;
      case "messageUpdated":
        this.onMessage(ev.account, ev.message, false);
        break;
      case "conversation": {
        const st = s.accounts.get(ev.account);
        if (!st) break;
        const c = { ...ev.conversation };
        // The shown conversation, read to its bottom, stays read.
        if (c.unread > 0 && this.isShown(ev.account, c.key) && this.canMarkRead()) this.scheduleMarkRead();
        s.upsertConversation(ev.account, c);
        break;
      }
      case "presence": {
        const st = s.accounts.get(ev.account);
        if (!st) break;
        st.online = ev.online.slice();
        st.presenceEvents += 1;
        s.emit("online", ev.account);
        if (ev.account === s.currentAccount && ev.user !== st.account.displayName) {
          const text = ev.joined ? `${ev.user} joined` : `${ev.user} left`;
          this.notifier.toast(text, "info");
        }
        break;
      }
      case "inspector": {
        const st = s.accounts.get(ev.account);
        if (!st) break;
        st.inspector.push(ev.entry);
        st.inspectorTotal += 1;
        if (st.inspector.length > INSPECTOR_MAX) st.inspector.splice(0, st.inspector.length - INSPECTOR_MAX);
        s.emit("inspector", ev.account);
        break;
      }
      case "hubMethods": {
        const st = s.accounts.get(ev.account);
        if (!st) break;
        st.account = { ...st.account, methods: ev.methods, unavailable: ev.unavailable };
        s.emit("methods", ev.account);
        break;
      }
      case "notice": {
        const prefix = ev.account !== null && ev.account !== s.currentAccount ? this.accountPrefix(ev.account) : "";
        this.notifier.toast(prefix + ev.text, ev.level);
        break;
      }
    }
  }

  private accountPrefix(id: AccountId): string {
    const st = this.store.accounts.get(id);
    return st ? `${st.account.displayName}@${st.account.local ? "local hub" : st.account.url}: ` : "";
  }

  private onMessage(account: AccountId, m: Message, fresh: boolean): void {
    const st = this.store.accounts.get(account);
    if (!st) return;
    if (fresh && !st.conversations.has(m.conversation)) {
      st.conversations.set(m.conversation, api.placeholderConversation(m.conversation));
      this.store.emit("conversations", account);
    }
    const log = st.logs.get(m.conversation);
    if (log) {
      if (fresh) log.add(m);
      else log.update(m);
    }
    const shown = this.isShown(account, m.conversation);
    if (shown) {
      this.list?.invalidate();
      this.scheduleMarkRead();
    }
    if (fresh && !m.outgoing) {
      const conv = st.conversations.get(m.conversation);
      const where = conv?.kind === "direct" ? "direct message" : `in ${conv?.name ?? "Everyone"}`;
      const hub = account === this.store.currentAccount ? "" : ` (${st.account.displayName} on ${st.account.local ? "local hub" : st.account.url})`;
      const body = m.body.length > 280 ? `${m.body.slice(0, 280)}…` : m.body;
      this.notifier.announce(`${m.sender}, ${where}${hub}: ${body}`);
    }
    this.store.emit("messages", `${account}|${m.conversation}`);
  }

  // ---- selection -----------------------------------------------------------------------------

  isShown(account: AccountId, key: ConversationKey): boolean {
    const log = this.list?.shownLog();
    return !!log && log.account === account && log.key === key && this.store.screen === "chat";
  }

  async selectAccount(id: AccountId): Promise<void> {
    const st = this.store.accounts.get(id);
    if (!st) return;
    this.store.currentAccount = id;
    // The header, the list and the composer's target switch together, at once: a message typed
    // right after switching goes to the hub shown. (Showing the list only once the conversations
    // had answered left the previous hub's list shown, and sent to, under this hub's header.)
    const log = this.showConversation(st, st.current);
    await this.refreshAccount(st);
    // Its first page once its conversations are known; not for a hub left meanwhile.
    if (this.list?.shownLog() === log) await this.loadShown(st, log);
  }

  private async refreshAccount(st: AccountState): Promise<void> {
    try {
      const presenceEvents = st.presenceEvents;
      const [convs, who] = await Promise.all([api.conversations(st.id), api.online(st.id)]);
      for (const c of convs) st.conversations.set(c.key, c);
      st.conversationsLoaded = true;
      // A presence event that came meanwhile is newer than this answer.
      if (st.presenceEvents === presenceEvents) st.online = who;
      this.store.emit("conversations", st.id);
      this.store.emit("online", st.id);
    } catch (err) {
      this.notifier.toast(`Could not load conversations: ${api.errorText(err)}`, "error");
    }
  }

  /** Shows a conversation of the current account (loading its newest page if needed). */
  async openConversation(key: ConversationKey): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    await this.loadShown(st, this.showConversation(st, key));
  }

  /** Makes a conversation of `st` the one shown (and sent to), at once. Returns its log. */
  private showConversation(st: AccountState, key: ConversationKey): ConversationLog {
    st.current = key;
    if (!st.conversations.has(key)) {
      st.conversations.set(key, api.placeholderConversation(key));
      this.store.emit("conversations", st.id);
    }
    const log = st.log(key);
    this.list?.show(log);
    this.store.emit("selection");
    return log;
  }

  /** Loads a shown log's newest page if needed; redraws it if it is still shown then. */
  private async loadShown(st: AccountState, log: ConversationLog): Promise<void> {
    await this.ensureLoaded(st, log);
    if (this.list?.shownLog() === log) {
      this.list.invalidate();
      this.scheduleMarkRead();
    }
  }

  private async ensureLoaded(st: AccountState, log: ConversationLog): Promise<void> {
    if (log.loaded) return;
    if (!log.loading) {
      log.loading = (async () => {
        try {
          const page = await api.history(st.id, log.key, null, PAGE);
          log.setFirstPage(page, PAGE);
        } catch (err) {
          this.notifier.toast(`Could not load history: ${api.errorText(err)}`, "error");
        } finally {
          log.loading = null;
        }
      })();
    }
    await log.loading;
  }

  /** Loads the next older page of a log (no-op while one is loading or none is left). */
  async loadOlder(log: ConversationLog, limit = PAGE): Promise<void> {
    if (log.loading || !log.loaded || !log.hasMore) return;
    const before = log.items.length ? log.items[0]!.seq : null;
    const shown = () => this.list?.shownLog() === log;
    if (shown()) this.list?.setLoadingOlder(true);
    log.loading = (async () => {
      try {
        const page = await api.history(log.account, log.key, before, limit);
        log.prepend(page, limit);
      } catch (err) {
        this.notifier.toast(`Could not load older messages: ${api.errorText(err)}`, "error");
        log.hasMore = false;
      } finally {
        log.loading = null;
      }
    })();
    await log.loading;
    if (shown()) {
      this.list?.setLoadingOlder(false);
      this.list?.invalidate();
    }
  }

  /** Opens a search result: its conversation, paged back far enough, scrolled to it. */
  async jumpTo(m: Message): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    await this.openConversation(m.conversation);
    const log = st.log(m.conversation);
    if (this.list?.shownLog() === log) this.list.setLoadingOlder(true);
    while (log.loaded && log.hasMore && (log.items.length === 0 || log.items[0]!.seq > m.seq)) {
      if (log.loading) await log.loading;
      else await this.loadOlder(log, JUMP_PAGE);
    }
    if (this.list?.shownLog() === log) {
      this.list.setLoadingOlder(false);
      this.list.invalidate();
      this.list.scrollToMessage(m.id);
    }
  }

  /** Moves to the previous (-1) or next (+1) conversation of the current account. */
  async stepConversation(dir: -1 | 1): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    const list = st.orderedConversations();
    const i = list.findIndex((c) => c.key === st.current);
    const next = list[(i + dir + list.length) % list.length];
    if (next) await this.openConversation(next.key);
  }

  async stepAccount(dir: -1 | 1): Promise<void> {
    const list = this.store.orderedAccounts();
    const i = list.findIndex((a) => a.id === this.store.currentAccount);
    const next = list[(i + dir + list.length) % list.length];
    if (next) await this.selectAccount(next.id);
  }

  // ---- read state ----------------------------------------------------------------------------

  private canMarkRead(): boolean {
    return document.visibilityState === "visible" && !!this.list?.atBottom() && this.store.screen === "chat";
  }

  /** Reports the shown conversation as read when the reader sees its newest message. */
  scheduleMarkRead(): void {
    if (this.markTimer) return;
    this.markTimer = window.setTimeout(() => {
      this.markTimer = 0;
      this.markReadNow();
    }, 120);
  }

  private markReadNow(): void {
    const log = this.list?.shownLog();
    if (!log || !log.loaded || !this.canMarkRead()) return;
    const st = this.store.accounts.get(log.account);
    if (!st) return;
    const conv = st.conversations.get(log.key);
    const seq = log.newestSeq();
    if (seq === 0) return;
    if (seq <= log.lastMarked && !(conv && conv.unread > 0)) return;
    log.lastMarked = seq;
    if (conv && conv.unread > 0) {
      st.conversations.set(log.key, { ...conv, unread: 0 });
      this.store.emit("conversations", st.id);
    }
    api.markRead(st.id, log.key, seq).catch((err) => this.notifier.toast(`Could not mark as read: ${api.errorText(err)}`, "warning"));
  }

  // ---- intents -------------------------------------------------------------------------------

  async addAccount(input: NewAccount): Promise<Account> {
    const account = await api.addAccount(input);
    const s = this.store;
    if (!s.accounts.has(account.id)) {
      s.setAccounts([...s.orderedAccounts().map((a) => a.account), account]);
    }
    this.showScreen("chat");
    this.setPane("chat");
    await this.selectAccount(account.id);
    return account;
  }

  async removeAccount(id: AccountId): Promise<void> {
    await api.removeAccount(id);
    const rest = this.store.orderedAccounts().filter((a) => a.id !== id).map((a) => a.account);
    this.store.setAccounts(rest);
    if (rest.length === 0) {
      this.list?.show(null);
      this.showScreen("connect");
    } else {
      await this.selectAccount(this.store.currentAccount ?? rest[0]!.id);
    }
  }

  async toggleConnection(): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    const state = st.account.status.state;
    try {
      if (state === "disconnected" || state === "suspended") await api.connect(st.id);
      else await api.disconnect(st.id);
    } catch (err) {
      this.notifier.toast(api.errorText(err), "error");
    }
  }

  async setToken(id: AccountId, token: string | null): Promise<void> {
    const account = await api.setToken(id, token);
    const st = this.store.accounts.get(id);
    if (st) {
      st.account = account;
      this.store.emit("accounts");
    }
  }

  /** Uses these hub methods for the account from now on. Rejects with why they do not parse. */
  async setMethods(id: AccountId, methods: api.Methods): Promise<void> {
    const account = await api.setMethods(id, methods);
    const st = this.store.accounts.get(id);
    if (st) {
      st.account = account;
      this.store.emit("methods", id);
    }
  }

  /** Uses this protocol family and classic hub name from now on (the account reconnects). */
  async setFamily(id: AccountId, family: api.Family, hubName: string | null): Promise<void> {
    const account = await api.setFamily(id, family, hubName);
    const st = this.store.accounts.get(id);
    if (st) {
      st.account = account;
      this.store.emit("accounts");
    }
  }

  /** Trusts this CA (PEM; null: the system's only) for the account's hub (it reconnects). */
  async setCa(id: AccountId, caPem: string | null): Promise<void> {
    const account = await api.setCa(id, caPem);
    const st = this.store.accounts.get(id);
    if (st) {
      st.account = account;
      this.store.emit("accounts");
    }
  }

  /** The inspector's console: invokes a hub method; resolves with its result. */
  invokeHub(id: AccountId, method: string, args: unknown[]): Promise<unknown> {
    return api.invokeHub(id, method, args);
  }

  /** Sends the composer's text to the shown conversation. Rejects with a readable message. */
  async send(text: string): Promise<void> {
    const log = this.list?.shownLog();
    if (!log) throw new Error("No conversation is open.");
    const m = await api.send(log.account, log.key, text);
    if (m.conversation === log.key) log.add(m);
    this.list?.scrollToBottom();
  }

  async retry(m: Message): Promise<void> {
    const log = this.list?.shownLog();
    if (!log) return;
    try {
      const updated = await api.retry(log.account, m.conversation, m.id);
      // Unless an event already moved it on (sent, or failed again).
      if (log.stateOf(m.id) === "failed" && updated.state !== "failed") log.update(updated);
      this.list?.invalidate();
    } catch (err) {
      this.notifier.toast(`Retry failed: ${api.errorText(err)}`, "error");
    }
  }

  async discard(m: Message): Promise<void> {
    const log = this.list?.shownLog();
    if (!log) return;
    try {
      await api.discard(log.account, m.conversation, m.id);
      log.remove(m.id);
      this.list?.invalidate();
    } catch (err) {
      this.notifier.toast(`Could not discard: ${api.errorText(err)}`, "error");
    }
  }

  async joinRoom(room: string): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    const c = await api.joinRoom(st.id, room);
    this.store.upsertConversation(st.id, c);
    await this.openConversation(c.key);
  }

  async leaveRoom(key: ConversationKey): Promise<void> {
    const st = this.store.current();
    const room = api.roomOf(key);
    if (!st || room === null) return;
    await api.leaveRoom(st.id, room);
    st.conversations.delete(key);
    st.logs.delete(key);
    this.store.emit("conversations", st.id);
    if (st.current === key) await this.openConversation(api.BROADCAST);
  }

  async openDirect(user: string): Promise<void> {
    const st = this.store.current();
    if (!st) return;
    const c = await api.openDirect(st.id, user);
    this.store.upsertConversation(st.id, c);
    await this.openConversation(c.key);
  }

  async search(query: string, limit = 50): Promise<Message[]> {
    const st = this.store.current();
    if (!st || !query.trim()) return [];
    return api.search(st.id, query, limit);
  }
}
