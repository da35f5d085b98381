// Short-lived notices (presence, shell notices, errors) and the screen-reader announcer.

import type { NoticeLevel } from "../api";
import type { Notifier } from "../app";
import { byId, h } from "../dom";

const TOAST_MS = { info: 6000, warning: 9000, error: 12000 } as const;
const MAX_TOASTS = 4;
const MAX_ANNOUNCEMENTS = 5;
/** Announcements arriving within this window are read together (a catch-up burst is one line). */
const BATCH_MS = 400;
const BATCH_MAX = 3;

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

  private batch: string[] = [];
  private batchTimer = 0;

  announce(text: string): void {
    this.batch.push(text);
    if (!this.batchTimer) this.batchTimer = window.setTimeout(() => this.flush(), BATCH_MS);
  }

  private flush(): void {
    this.batchTimer = 0;
    const items = this.batch.splice(0);
    const lines = items.length <= BATCH_MAX ? items : [`${items.length} new messages and updates. The latest: ${items[items.length - 1]}`];
    // Each announcement is a new node: a polite live region reads additions in order.
    for (const line of lines) this.live.append(h("p", {}, line));
    while (this.live.children.length > MAX_ANNOUNCEMENTS) this.live.firstElementChild!.remove();
  }
}
