// The typed IPC boundary with the shell. Mirrors ui/IPC.md exactly: change both together.
// Every function here is a thin wrapper over `invoke`; the shell does all networking.

import { Channel, invoke } from "@tauri-apps/api/core";

export type AccountId = number;
/** "broadcast", "room:<name>" or "dm:<user>" */
export type ConversationKey = string;

export interface AppInfo {
  version: string;
  platform: "desktop" | "mobile";
  /** Whether tokens can be kept in the OS keychain; when not, `detail` says why. */
  keychain: { available: boolean; detail: string | null };
  /** The embedded hub's URL when it runs (it starts when an account uses it). */
  localHubUrl: string | null;
}

export type State = "disconnected" | "connecting" | "connected" | "reconnecting" | "suspended";
export type SlowReason = "hubSilent" | "sendsStalled";
export type Protocol = "json" | "messagepack";
export type Transport = "auto" | "webSockets" | "serverSentEvents" | "longPolling";
/** The SignalR protocol family: decided by the hub's negotiate answer, ASP.NET Core, or classic ASP.NET SignalR 2.x. */
export type Family = "auto" | "core" | "classic";

export interface Status {
  state: State;
  /** reconnecting: which retry is next (1 for the first). */
  attempt: number | null;
  /** reconnecting: when the next try starts (ms since the Unix epoch). */
  nextRetryAt: number | null;
  /** reconnecting / disconnected: why the connection was lost or closed; null after a plain stop. */
  reason: string | null;
  /** Non-null while the connection is slow. */
  slow: SlowReason | null;
  /** The transport in use while connected ("WebSockets", "ServerSentEvents", "LongPolling"). */
  transport: string | null;
  /** The protocol family spoken since the last connect (what auto found); null before the first. */
  family: "core" | "classic" | null;
}

export interface Account {
  id: AccountId;
  url: string;
  displayName: string;
  protocol: Protocol;
  transport: Transport;
  /** The protocol family it is set to (what auto found is in `status.family`). */
  family: Family;
  /** The hub asked for on a classic endpoint (…/signalr); null: the default, chatHub. */
  hubName: string | null;
  /** Certificates (PEM) trusted besides the system's for the hub's TLS (a private CA); null: the system's only. */
  caPem: string | null;
  /** This account uses the embedded hub on 127.0.0.1. */
  local: boolean;
  /** Where its token lives: none, the OS keychain, or only in memory for this session. */
  token: "none" | "keychain" | "session";
  status: Status;
  /** The hub's chat methods in use (auto until the first send found them). */
  methods: Methods;
  /** Hubbub's extras this hub lacks (history, inbox, rooms, presence), with the hub's answer. */
  unavailable: Unavailable[];
}

export type Preset = "auto" | "hubbub" | "classicTutorial" | "coreTutorial" | "custom";

/** A hub's chat contract, written as `Name(name,text)` / `Name(0,1)`, `Name(0.user,0.message)`. */
export interface Methods {
  preset: Preset;
  /** The send method; null under auto until the first send found it. */
  send: string | null;
  /** The receive methods; empty: every known one (auto). */
  receive: string[];
}

export interface Unavailable {
  feature: string;
  reason: string;
}

export type InspectorEntry =
  | { kind: "invocation"; atMs: number; target: string; arguments: unknown[]; chat: boolean }
  | { kind: "connection"; atMs: number; event: Record<string, unknown> };

export interface NewAccount {
  /** Empty or null: the embedded local hub. */
  url: string | null;
  displayName: string;
  token: string | null;
  protocol: Protocol;
  transport: Transport;
  /** Auto when missing. */
  family?: Family;
  /** The classic hub name; missing or null: chatHub. */
  hubName?: string | null;
  /** A private CA's certificate (PEM); missing or null: the system's CAs only. */
  caPem?: string | null;
}

export type ConversationKind = "broadcast" | "room" | "direct";

export interface Conversation {
  key: ConversationKey;
  kind: ConversationKind;
  /** "Everyone" for the broadcast, the room's name, or the other user's name. */
  name: string;
  unread: number;
}

export type MessageState = "sending" | "sent" | "failed" | "received";

export interface Message {
  /** Local position: increases with every stored message; the paging key. */
  seq: number;
  /** Stable id (the same on every client). */
  id: string;
  conversation: ConversationKey;
  sender: string;
  /** Plain text. Render as text, never as HTML. */
  body: string;
  /** Typed on this device. */
  outgoing: boolean;
  state: MessageState;
  /** Why the hub refused it (state "failed"). */
  error: string | null;
  /** ms since the Unix epoch. */
  createdAt: number;
}

export type NoticeLevel = "info" | "warning" | "error";

export type AppEvent =
  | { type: "accounts"; accounts: Account[] }
  | { type: "status"; account: AccountId; status: Status }
  | { type: "message"; account: AccountId; message: Message }
  | { type: "messageUpdated"; account: AccountId; message: Message }
  | { type: "conversation"; account: AccountId; conversation: Conversation }
  | { type: "presence"; account: AccountId; user: string; joined: boolean; online: string[] }
  | { type: "inspector"; account: AccountId; entry: InspectorEntry }
  | { type: "hubMethods"; account: AccountId; methods: Methods; unavailable: Unavailable[] }
  | { type: "notice"; account: AccountId | null; level: NoticeLevel; text: string };

export interface AppError {
  kind: string;
  message: string;
}

/** A readable sentence for whatever a command rejected with. */
export function errorText(err: unknown): string {
  if (typeof err === "string") return err;
  if (err && typeof err === "object") {
    const e = err as Partial<AppError> & { toString?: () => string };
    if (typeof e.message === "string" && e.message) return e.message;
    if (typeof e.kind === "string") return e.kind;
  }
  return String(err);
}

// ---- commands -------------------------------------------------------------------------------

export function appInfo(): Promise<AppInfo> {
  return invoke<AppInfo>("app_info");
}

/**
 * Hands the shell one channel for every event. A later call replaces the earlier subscription.
 * Returns the channel so the caller keeps it alive.
 */
export async function subscribe(onEvent: (event: AppEvent) => void): Promise<Channel<AppEvent>> {
  const channel = new Channel<AppEvent>(onEvent);
  await invoke<void>("subscribe", { onEvent: channel });
  return channel;
}

export function listAccounts(): Promise<Account[]> {
  return invoke<Account[]>("list_accounts");
}

export function addAccount(input: NewAccount): Promise<Account> {
  return invoke<Account>("add_account", { input });
}

export function removeAccount(account: AccountId): Promise<void> {
  return invoke<void>("remove_account", { account });
}

export function connect(account: AccountId): Promise<void> {
  return invoke<void>("connect", { account });
}

export function disconnect(account: AccountId): Promise<void> {
  return invoke<void>("disconnect", { account });
}

export function setToken(account: AccountId, token: string | null): Promise<Account> {
  return invoke<Account>("set_token", { account, token });
}

export function conversations(account: AccountId): Promise<Conversation[]> {
  return invoke<Conversation[]>("conversations", { account });
}

/** Oldest first, all with `seq < before` (`before: null` = the newest page). */
export function history(
  account: AccountId,
  conversation: ConversationKey,
  before: number | null,
  limit: number,
): Promise<Message[]> {
  return invoke<Message[]>("history", { account, conversation, before, limit });
}

export function send(account: AccountId, conversation: ConversationKey, text: string): Promise<Message> {
  return invoke<Message>("send", { account, conversation, text });
}

export function retry(account: AccountId, conversation: ConversationKey, id: string): Promise<Message> {
  return invoke<Message>("retry", { account, conversation, id });
}

export function discard(account: AccountId, conversation: ConversationKey, id: string): Promise<void> {
  return invoke<void>("discard", { account, conversation, id });
}

export function joinRoom(account: AccountId, room: string): Promise<Conversation> {
  return invoke<Conversation>("join_room", { account, room });
}

export function leaveRoom(account: AccountId, room: string): Promise<void> {
  return invoke<void>("leave_room", { account, room });
}

export function openDirect(account: AccountId, user: string): Promise<Conversation> {
  return invoke<Conversation>("open_direct", { account, user });
}

export function online(account: AccountId): Promise<string[]> {
  return invoke<string[]>("online", { account });
}

/** Newest first. */
export function search(account: AccountId, query: string, limit: number): Promise<Message[]> {
  return invoke<Message[]>("search", { account, query, limit });
}

export function markRead(account: AccountId, conversation: ConversationKey, seq: number): Promise<void> {
  return invoke<void>("mark_read", { account, conversation, seq });
}

export function lifecycle(foreground: boolean): Promise<void> {
  return invoke<void>("lifecycle", { foreground });
}

export function setMethods(account: AccountId, methods: Methods): Promise<Account> {
  return invoke<Account>("set_methods", { account, methods });
}

/**
 * Speaks `family` with the account's hub from now on, asking a classic endpoint for `hubName`
 * (null: chatHub); the account reconnects. Rejects with kind "invalid" for a hub name that is
 * not a name.
 */
export function setFamily(account: AccountId, family: Family, hubName: string | null): Promise<Account> {
  return invoke<Account>("set_family", { account, family, hubName });
}

/** The longest classic hub name the core accepts. */
export const HUB_NAME_MAX = 64;

/**
 * Why a classic hub name would be refused, or null when it is fine (as the core checks it:
 * letters, digits, _ or $, not starting with a digit). An empty field means the default.
 */
export function hubNameProblem(name: string): string | null {
  const n = name.trim();
  if (!n) return null;
  if (n.length > HUB_NAME_MAX) return `A hub name has at most ${HUB_NAME_MAX} characters.`;
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(n)) return "A hub name has letters, digits, _ or $ only, and does not start with a digit (such as chatHub).";
  return null;
}

/**
 * Trusts the certificates in `caPem` (a private CA, PEM) besides the system's for the account's
 * hub from now on; null or blank: the system's only. The account reconnects. Rejects with kind
 * "invalid" for text with no usable certificate (nothing is changed then).
 */
export function setCa(account: AccountId, caPem: string | null): Promise<Account> {
  return invoke<Account>("set_ca", { account, caPem });
}

/**
 * Why a CA field would be refused before the core sees it, or null when it may be fine (the
 * core checks each certificate). A blank field means the system's CAs only.
 */
export function caPemProblem(text: string): string | null {
  const t = text.trim();
  if (!t) return null;
  if (!t.includes("-----BEGIN CERTIFICATE-----") || !t.includes("-----END CERTIFICATE-----")) {
    return "Paste the CA's certificate in PEM form: from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----.";
  }
  return null;
}

/** How many certificates a PEM text holds (for the settings' summary). */
export function pemCount(text: string | null): number {
  return text ? text.split("-----BEGIN CERTIFICATE-----").length - 1 : 0;
}

/** Invokes any hub method with JSON arguments; resolves with its result (null for none). */
export function invokeHub(account: AccountId, method: string, args: unknown[]): Promise<unknown> {
  return invoke<unknown>("invoke_hub", { account, method, arguments: args });
}

// ---- helpers over conversation keys ---------------------------------------------------------

export const BROADCAST: ConversationKey = "broadcast";

export function roomKey(room: string): ConversationKey {
  return `room:${room}`;
}

export function directKey(user: string): ConversationKey {
  return `dm:${user}`;
}

/** The room name of a "room:<name>" key, or null. */
export function roomOf(key: ConversationKey): string | null {
  return key.startsWith("room:") ? key.slice(5) : null;
}

/** The other user of a "dm:<user>" key, or null. */
export function peerOf(key: ConversationKey): string | null {
  return key.startsWith("dm:") ? key.slice(3) : null;
}

export function kindOf(key: ConversationKey): ConversationKind {
  if (key.startsWith("room:")) return "room";
  if (key.startsWith("dm:")) return "direct";
  return "broadcast";
}

/** A conversation known only by its key (before the shell has told us about it). */
export function placeholderConversation(key: ConversationKey): Conversation {
  const kind = kindOf(key);
  const name = kind === "room" ? roomOf(key)! : kind === "direct" ? peerOf(key)! : "Everyone";
  return { key, kind, name, unread: 0 };
}
