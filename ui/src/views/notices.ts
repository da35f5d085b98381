// Short-lived notices (presence, shell notices, errors) and the screen-reader announcer.

import type { NoticeLevel } from "../api";
import type { Notifier } from "../app";
import { byId, h } from "../dom";

const TOAST_MS = { info: 6000, warning: 9000, error: 12000 } as const;
const MAX_TOASTS = 4;
const MAX_ANNOUNCEMENTS = 5;

export class Notices implements Notifier {
  private readonly list = byId<HTMLUListElement>("notices");
  private readonly live = byId("live");

  toast(text: string, level: NoticeLevel = "info"): void {
    const item = h("li", { class: `notice ${level}`, "data-level": level }, h("span", { class: "notice-text" }, text));
    const close = h("button", { type: "button", class: "notice-close", "aria-label": "Dismiss" }, "×");
    close.addEventListener("click", () => item.remove());
    item.append(close);
    this.list.append(item);
    while (this.list.children.length > MAX_TOASTS) this.list.firstElementChild!.remove();
    window.setTimeout(() => item.remove(), TOAST_MS[level]);
  }

  announce(text: string): void {
    // Each announcement is a new node: a polite live region reads additions in order.
    this.live.append(h("p", {}, text));
    while (this.live.children.length > MAX_ANNOUNCEMENTS) this.live.firstElementChild!.remove();
  }
}
