// Wording and formatting shared by the views.

import type { Account, Status } from "./api";

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function clockTime(ms: number): string {
  return timeFmt.format(ms);
}

export function fullTime(ms: number): string {
  return fullFmt.format(ms);
}

export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ms: number, now = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return "Today";
  if (dayKey(ms) === dayKey(now - 86_400_000)) return "Yesterday";
  return dayFmt.format(ms);
}

/** Seconds left until `at`, rounded up, never negative. */
export function secondsUntil(at: number, now = Date.now()): number {
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** The one-line state shown in the header pill and read by screen readers. */
export function statusText(status: Status, now = Date.now()): string {
  switch (status.state) {
    case "connected": {
      // Classic ASP.NET SignalR is said (ASP.NET Core, the usual case, is not).
      const classic = status.family === "classic" ? " · classic" : "";
      return status.transport ? `Connected · ${status.transport}${classic}` : `Connected${classic}`;
    }
    case "connecting":
      return "Connecting…";
    case "reconnecting": {
      const attempt = status.attempt ?? 1;
      if (status.nextRetryAt === null) return `Reconnecting · attempt ${attempt}`;
      const s = secondsUntil(status.nextRetryAt, now);
      return s > 0 ? `Reconnecting · attempt ${attempt} in ${s} s` : `Reconnecting · attempt ${attempt} now…`;
    }
    case "suspended":
      return "Paused in the background";
    case "disconnected":
      return status.reason ? `Disconnected: ${status.reason}` : "Disconnected";
  }
}

/** A short label for the sidebar and the account menu. */
export function stateWord(status: Status): string {
  switch (status.state) {
    case "connected":
      return "connected";
    case "connecting":
      return "connecting";
    case "reconnecting":
      return `reconnecting (attempt ${status.attempt ?? 1})`;
    case "suspended":
      return "paused";
    case "disconnected":
      return "disconnected";
  }
}

export function slowText(slow: Status["slow"]): string {
  if (slow === "hubSilent") return "Slow connection: the hub has not answered for a while. Messages will arrive when it does.";
  if (slow === "sendsStalled") return "Slow connection: your messages are taking longer than usual to go out.";
  return "";
}

/** "Local hub" for the embedded hub, otherwise the URL's host (and path when it says more). */
export function hubLabel(account: Account): string {
  if (account.local) return "Local hub";
  try {
    const u = new URL(account.url);
    const path = u.pathname.replace(/\/+$/, "");
    return path && path !== "/" ? `${u.host}${path}` : u.host;
  } catch {
    return account.url;
  }
}

/** Up to two letters for an avatar. */
export function initials(name: string): string {
  const words = name.trim().split(/[\s._-]+/).filter(Boolean);
  if (words.length === 0) return "?";
  const first = Array.from(words[0]!)[0] ?? "";
  const second = words.length > 1 ? Array.from(words[1]!)[0] ?? "" : Array.from(words[0]!)[1] ?? "";
  return (first + second).toUpperCase();
}

/** A stable hue bucket (0–7) for a name, used to pick an avatar colour class. */
export function hueOf(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return h % 8;
}

export function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
