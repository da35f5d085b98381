// The UI's model of what the shell has told it: accounts, their statuses, conversations,
// who is online, and the loaded part of each conversation's history. Views subscribe to topics.

import type { Account, AccountId, AppInfo, Conversation, ConversationKey, InspectorEntry, Message, Status } from "./api";
import { BROADCAST, placeholderConversation } from "./api";

/** The loaded, contiguous newest-to-some-point slice of one conversation's history. */
export class ConversationLog {
  /** Oldest first, strictly increasing `seq`. */
  items: Message[] = [];
  private readonly ids = new Set<string>();
  /** The first page has arrived. */
  loaded = false;
  /** Older pages may exist. */
  hasMore = true;
  loading: Promise<void> | null = null;
  /** Messages that arrived by event before the first page did. */
  early: Message[] = [];
  /** State changes heard before the first page for messages not known here yet (the change
   * can come before the `send` reply that brings the message): applied when it comes, or to
   * the page's copy. */
  private readonly earlyUpdates = new Map<string, Message>();
  /** Measured row heights by message id, with the layout variant they were measured in. */
  heights = new Map<string, { h: number; variant: number }>();
  /** Where the reader left off: null = following the newest message. */
  saved: { id: string; offset: number } | null = null;
  /** The highest seq reported to mark_read. */
  lastMarked = 0;
  /** Bumped on every change, so a view can tell whether to re-render. */
  version = 0;

  constructor(
    readonly account: AccountId,
    readonly key: ConversationKey,
  ) {}

  has(id: string): boolean {
    return this.ids.has(id);
  }

  newestSeq(): number {
    return this.items.length ? this.items[this.items.length - 1]!.seq : 0;
  }

  /** The first page (newest messages), merged with anything heard meanwhile. */
  setFirstPage(page: Message[], limit: number): void {
    this.items = [];
    this.ids.clear();
    this.hasMore = page.length >= limit;
    for (const m of page) this.pushSorted(m);
    this.loaded = true;
    // Heard by event while the page was on its way: newer than the page's copy, which the shell
    // may have read before the message's last change (say, before `sending` became `sent`).
    for (const m of this.early) if (!this.update(m)) this.pushSorted(m);
    this.early = [];
    for (const m of this.earlyUpdates.values()) this.update(m);
    this.earlyUpdates.clear();
    this.version++;
  }

  /** An older page (oldest first, all older than what is loaded). Returns how many were new. */
  prepend(page: Message[], limit: number): number {
    if (page.length < limit) this.hasMore = false;
    const fresh = page.filter((m) => !this.ids.has(m.id));
    if (fresh.length === 0) {
      if (page.length === 0) this.hasMore = false;
      return 0;
    }
    fresh.sort((a, b) => a.seq - b.seq);
    const oldest = this.items[0];
    if (oldest && fresh[fresh.length - 1]!.seq > oldest.seq) {
      // Out of order (should not happen): fall back to a sorted merge.
      for (const m of fresh) this.pushSorted(m);
    } else {
      for (const m of fresh) this.ids.add(m.id);
      this.items = fresh.concat(this.items);
    }
    this.version++;
    return fresh.length;
  }

  /** A newly stored message. Returns true when it was not known. */
  add(m: Message): boolean {
    if (!this.loaded) {
      if (!this.early.some((e) => e.id === m.id)) {
        // A change heard before it is newer than what brought it.
        this.early.push(this.earlyUpdates.get(m.id) ?? m);
        this.earlyUpdates.delete(m.id);
      }
      return true;
    }
    // Already here: the shell's events are newer than a command's reply (a `send` reply can
    // arrive after the `messageUpdated` that marked the message sent), so keep what is shown.
    if (this.ids.has(m.id)) return false;
    this.pushSorted(m);
    this.version++;
    return true;
  }

  /** A message whose state changed. Returns whether it is loaded here. */
  update(m: Message): boolean {
    if (!this.loaded) {
      const i = this.early.findIndex((e) => e.id === m.id);
      if (i >= 0) this.early[i] = m;
      else this.earlyUpdates.set(m.id, m);
      return false;
    }
    const i = this.indexOf(m.id);
    if (i < 0) return false;
    const old = this.items[i]!;
    if (old.seq !== m.seq) {
      // A retried message may be stored again with a new position.
      this.items.splice(i, 1);
      this.ids.delete(old.id);
      this.pushSorted(m);
    } else {
      this.items[i] = m;
    }
    this.heights.delete(m.id);
    this.version++;
    return true;
  }

  remove(id: string): void {
    const i = this.indexOf(id);
    if (i >= 0) {
      this.items.splice(i, 1);
      this.ids.delete(id);
      this.heights.delete(id);
      this.version++;
    }
    this.early = this.early.filter((m) => m.id !== id);
    this.earlyUpdates.delete(id);
  }

  /** The state shown for a message, if it is loaded. */
  stateOf(id: string): Message["state"] | undefined {
    const i = this.indexOf(id);
    return i < 0 ? this.early.find((e) => e.id === id)?.state : this.items[i]!.state;
  }

  /** Index by id, searching from the newest end (updates are nearly always recent). */
  indexOf(id: string): number {
    if (!this.ids.has(id)) return -1;
    for (let i = this.items.length - 1; i >= 0; i--) if (this.items[i]!.id === id) return i;
    return -1;
  }

  /** Index of the first message with seq >= the given one (binary search). */
  indexAtSeq(seq: number): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.items[mid]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private pushSorted(m: Message): void {
    if (this.ids.has(m.id)) return;
    this.ids.add(m.id);
    const n = this.items.length;
    if (n === 0 || this.items[n - 1]!.seq <= m.seq) {
      this.items.push(m);
      return;
    }
    this.items.splice(this.indexAtSeq(m.seq), 0, m);
  }
}

export class AccountState {
  conversations = new Map<ConversationKey, Conversation>();
  online: string[] = [];
  /** Counts presence events, so a slower `online` answer never overwrites a newer list. */
  presenceEvents = 0;
  logs = new Map<ConversationKey, ConversationLog>();
  current: ConversationKey = BROADCAST;
  /** Conversations have been fetched once. */
  conversationsLoaded = false;
  /** What the hub sent and what happened to the connection, newest last (the last 500). */
  inspector: InspectorEntry[] = [];
  /** How many inspector entries ever arrived (the log keeps the newest of them). */
  inspectorTotal = 0;

  constructor(public account: Account) {}

  get id(): AccountId {
    return this.account.id;
  }

  log(key: ConversationKey): ConversationLog {
    let log = this.logs.get(key);
    if (!log) {
      log = new ConversationLog(this.account.id, key);
      this.logs.set(key, log);
    }
    return log;
  }

  /** Broadcast first, then rooms, then direct conversations, each by name. */
  orderedConversations(): Conversation[] {
    const rank = { broadcast: 0, room: 1, direct: 2 } as const;
    const list = Array.from(this.conversations.values());
    if (!this.conversations.has(BROADCAST)) list.push(placeholderConversation(BROADCAST));
    return list.sort(
      (a, b) => rank[a.kind] - rank[b.kind] || a.name.localeCompare(b.name, undefined, { sensitivity: "base" }),
    );
  }

  unreadTotal(): number {
    let n = 0;
    for (const c of this.conversations.values()) n += c.unread;
    return n;
  }
}

export type Topic =
  | "accounts" // list changed (added, removed, renamed)
  | "status" // an account's status changed (detail: account id)
  | "conversations" // an account's conversation list or an unread count changed
  | "online" // an account's online list changed
  | "inspector" // an account's inspector got an entry (detail: account id)
  | "methods" // an account's hub methods or missing extras changed (detail: account id)
  | "messages" // a log changed (detail: "account|key")
  | "selection" // current account or conversation changed
  | "view"; // which screen is shown changed

type Listener = (detail?: unknown) => void;

export type Screen = "loading" | "connect" | "chat";

export class Store {
  info: AppInfo | null = null;
  accounts = new Map<AccountId, AccountState>();
  currentAccount: AccountId | null = null;
  screen: Screen = "loading";
  private listeners = new Map<Topic, Set<Listener>>();

  on(topic: Topic, fn: Listener): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  emit(topic: Topic, detail?: unknown): void {
    for (const fn of this.listeners.get(topic) ?? []) fn(detail);
  }

  current(): AccountState | null {
    return this.currentAccount === null ? null : (this.accounts.get(this.currentAccount) ?? null);
  }

  orderedAccounts(): AccountState[] {
    return Array.from(this.accounts.values());
  }

  /** Replaces the account list, keeping what is known about accounts that stay. */
  setAccounts(list: Account[]): void {
    const next = new Map<AccountId, AccountState>();
    for (const a of list) {
      const known = this.accounts.get(a.id);
      if (known) {
        known.account = a;
        next.set(a.id, known);
      } else {
        next.set(a.id, new AccountState(a));
      }
    }
    this.accounts = next;
    if (this.currentAccount !== null && !next.has(this.currentAccount)) this.currentAccount = null;
    if (this.currentAccount === null && list.length > 0) this.currentAccount = list[0]!.id;
    this.emit("accounts");
  }

  setStatus(id: AccountId, status: Status): void {
    const st = this.accounts.get(id);
    if (!st) return;
    st.account = { ...st.account, status };
    this.emit("status", id);
  }

  upsertConversation(id: AccountId, c: Conversation): void {
    const st = this.accounts.get(id);
    if (!st) return;
    st.conversations.set(c.key, c);
    this.emit("conversations", id);
  }
}
