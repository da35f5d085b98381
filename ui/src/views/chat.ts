// The open conversation: header with the connection state, banners, the message list and the
// composer.

import type { Message } from "../api";
import { errorText } from "../api";
import type { App, ListHost } from "../app";
import { byId, icon, setText } from "../dom";
import { hubLabel, secondsUntil, slowText, statusText } from "../format";
import type { ConversationLog } from "../store";
import { VirtualList } from "../virtual-list";
import { messageRows } from "./rows";

export class ChatView implements ListHost {
  private readonly list: VirtualList;
  private readonly scroller = byId("scroller");
  private readonly messages = byId<HTMLUListElement>("messages");
  private readonly title = byId("chat-title");
  private readonly hub = byId("chat-hub");
  private readonly status = byId("status");
  private readonly statusText = byId("status-text");
  private readonly toggle = byId<HTMLButtonElement>("toggle-connection");
  private readonly leave = byId<HTMLButtonElement>("leave-room");
  private readonly slow = byId("slow-banner");
  private readonly connBanner = byId("conn-banner");
  private readonly connBannerText = byId("conn-banner-text");
  private readonly connBannerAction = byId<HTMLButtonElement>("conn-banner-action");
  private readonly olderLoading = byId("older-loading");
  private readonly empty = byId("empty-state");
  private readonly jump = byId<HTMLButtonElement>("jump-latest");
  private readonly composer = byId<HTMLTextAreaElement>("composer");
  private readonly composerLabel = byId("composer-label");
  private readonly sendButton = byId<HTMLButtonElement>("broadcast");
  private readonly hint = byId("composer-hint");

  constructor(private readonly app: App) {
    this.list = new VirtualList(this.scroller, this.messages, messageRows);
    this.list.onNearTop = () => {
      const log = this.list.getLog();
      if (log) void app.loadOlder(log);
    };
    this.list.onAtBottom = () => app.scheduleMarkRead();
    this.list.onStickChange = (stick) => this.updateJump(stick);
    app.list = this;

    byId("back").append(icon("back"));
    byId("open-search").append(icon("search"));
    byId("open-account").append(icon("settings"));
    byId("open-inspector").append(icon("inspect"));
    this.toggle.prepend(icon("power"));
    this.leave.prepend(icon("close"));
    this.sendButton.prepend(icon("send"));
    this.jump.prepend(icon("down"));

    byId("back").addEventListener("click", () => app.setPane("list"));
    this.toggle.addEventListener("click", () => void app.toggleConnection());
    this.connBannerAction.addEventListener("click", () => void app.toggleConnection());
    this.leave.addEventListener("click", () => {
      const st = app.store.current();
      if (st) app.leaveRoom(st.current).catch((err) => app.notifier.toast(errorText(err), "error"));
    });
    this.jump.addEventListener("click", () => this.jumpToLatest());

    // Retry / Discard on failed messages (one listener for all rows).
    this.messages.addEventListener("click", (e) => {
      const button = (e.target as Element).closest<HTMLButtonElement>("button[data-action]");
      if (!button) return;
      const id = button.closest<HTMLElement>("li.message")?.dataset.id;
      const log = this.list.getLog();
      const i = id && log ? log.indexOf(id) : -1;
      if (!log || i < 0) return;
      const m = log.items[i]!;
      if (button.dataset.action === "retry") void app.retry(m);
      else if (button.dataset.action === "discard") void app.discard(m);
    });

    this.setupComposer();

    const s = app.store;
    s.on("status", (id) => {
      if (id === s.currentAccount) this.renderStatus();
    });
    s.on("selection", () => this.renderHeader());
    s.on("accounts", () => this.renderHeader());
    s.on("conversations", (id) => {
      if (id === s.currentAccount) this.renderHeader();
    });
    s.on("messages", () => this.renderEmpty());
    // The reconnect countdown ticks while it is shown.
    window.setInterval(() => {
      const st = s.current();
      if (st && st.account.status.state === "reconnecting") this.renderStatus();
    }, 250);
  }

  // ---- ListHost ------------------------------------------------------------------------------

  shownLog(): ConversationLog | null {
    return this.list.getLog();
  }

  atBottom(): boolean {
    return this.list.stick || this.list.isAtBottom();
  }

  show(log: ConversationLog | null): void {
    this.list.setLog(log);
    this.updateJump(this.list.stick);
    this.setLoadingOlder(!!log?.loading && log.loaded);
    this.renderEmpty();
  }

  invalidate(): void {
    this.list.invalidate();
    this.renderEmpty();
  }

  scrollToMessage(id: string): void {
    this.list.scrollToMessage(id);
  }

  scrollToBottom(): void {
    this.list.scrollToBottom();
  }

  setLoadingOlder(loading: boolean): void {
    this.olderLoading.hidden = !loading;
  }

  /** The row element of a message when rendered (tests and focus handling). */
  rowOf(m: Message): HTMLLIElement | null {
    return this.list.rowOf(m.id);
  }

  jumpToLatest(): void {
    this.list.scrollToBottom();
    this.updateJump(true);
  }

  focusComposer(): void {
    this.composer.focus();
  }

  // ---- rendering -----------------------------------------------------------------------------

  private updateJump(stick: boolean): void {
    this.jump.hidden = stick;
  }

  private renderEmpty(): void {
    const log = this.list.getLog();
    this.empty.hidden = !log || !log.loaded || log.items.length > 0;
  }

  renderHeader(): void {
    const st = this.app.store.current();
    if (!st) return;
    const conv = st.conversations.get(st.current);
    const kind = conv?.kind ?? "broadcast";
    const name = conv?.name ?? "Everyone";
    setText(this.title, kind === "room" ? `# ${name}` : kind === "direct" ? `@ ${name}` : name);
    setText(this.hub, `${hubLabel(st.account)} · you are ${st.account.displayName}`);
    this.leave.hidden = kind !== "room";
    const label = kind === "broadcast" ? "Broadcast" : "Send";
    setText(this.sendButton.querySelector(".label")!, label);
    this.sendButton.setAttribute(
      "aria-label",
      kind === "broadcast" ? "Broadcast to everyone" : kind === "room" ? `Send to room ${name}` : `Send to ${name}`,
    );
    const target = kind === "broadcast" ? "everyone" : kind === "room" ? `# ${name}` : name;
    this.composer.placeholder = `Message ${target}`;
    setText(this.composerLabel, `Message to ${target}`);
    this.messages.setAttribute("aria-label", `Messages in ${kind === "direct" ? `conversation with ${name}` : name}`);
    document.title = `${name} · Hubbub`;
    this.renderStatus();
  }

  renderStatus(): void {
    const st = this.app.store.current();
    if (!st) return;
    const status = st.account.status;
    const now = Date.now();
    this.status.dataset.state = status.state;
    setText(this.statusText, statusText(status, now));

    const offline = status.state === "disconnected" || status.state === "suspended";
    setText(this.toggle.querySelector(".label")!, offline ? "Connect" : "Disconnect");
    this.toggle.dataset.action = offline ? "connect" : "disconnect";
    this.toggle.classList.toggle("primary", offline);

    this.slow.hidden = status.slow === null;
    setText(this.slow, slowText(status.slow));

    // A fuller explanation below the header when the hub is not reachable.
    let banner = "";
    if (status.state === "reconnecting") {
      const attempt = status.attempt ?? 1;
      const left = status.nextRetryAt === null ? null : secondsUntil(status.nextRetryAt, now);
      banner =
        `Connection lost${status.reason ? ` (${status.reason})` : ""}. ` +
        (left === null || left === 0 ? `Trying again now (attempt ${attempt})…` : `Attempt ${attempt} in ${left} s.`) +
        " Messages you write are kept and sent when it is back.";
    } else if (status.state === "disconnected") {
      banner = status.reason
        ? `Disconnected: ${status.reason}. Messages you write are kept until you connect.`
        : "You are offline. Messages you write are kept until you connect.";
    } else if (status.state === "suspended") {
      banner = "Paused while Hubbub is in the background.";
    }
    this.connBanner.hidden = banner === "";
    this.connBanner.dataset.state = status.state;
    setText(this.connBannerText, banner);
    this.connBannerAction.hidden = !offline;
    setText(this.hint, offline || status.state === "reconnecting" ? "Offline: messages wait in the outbox" : "Enter sends · Shift+Enter adds a line");
  }

  // ---- composer ------------------------------------------------------------------------------

  private setupComposer(): void {
    const form = byId<HTMLFormElement>("composer-form");
    const grow = () => {
      this.composer.style.height = "auto";
      this.composer.style.height = `${Math.min(this.composer.scrollHeight, 200)}px`;
    };
    this.composer.addEventListener("input", grow);
    this.composer.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = this.composer.value;
      if (!text.trim()) return;
      this.composer.value = "";
      grow();
      this.app.send(text).catch((err) => {
        if (!this.composer.value) {
          this.composer.value = text;
          grow();
        }
        this.app.notifier.toast(`Not sent: ${errorText(err)}`, "error");
      });
    });
  }
}
