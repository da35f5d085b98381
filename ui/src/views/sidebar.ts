// The sidebar: hubs (accounts) with a status dot and unread totals, the selected hub's
// conversations with unread counts, and who is online there.

import type { Conversation } from "../api";
import { errorText } from "../api";
import type { App } from "../app";
import { byId, h, icon, replace } from "../dom";
import { hubLabel, plural, stateWord } from "../format";
import type { AccountState } from "../store";
import { avatar } from "./rows";

export class Sidebar {
  private readonly accounts = byId<HTMLUListElement>("accounts");
  private readonly conversations = byId<HTMLUListElement>("conversations");
  private readonly online = byId<HTMLUListElement>("online");
  private readonly onlineCount = byId("online-count");

  constructor(private readonly app: App) {
    byId("add-account").append(icon("plus"));
    byId("open-help").append(icon("help"));

    this.accounts.addEventListener("click", (e) => {
      const id = (e.target as Element).closest<HTMLElement>("[data-account]")?.dataset.account;
      if (id === undefined) return;
      // On phones the list stays: the hub's conversations are what one picks next.
      void app.selectAccount(Number(id));
    });
    this.conversations.addEventListener("click", (e) => {
      const key = (e.target as Element).closest<HTMLElement>("[data-key]")?.dataset.key;
      if (key === undefined) return;
      app.setPane("chat");
      void app.openConversation(key);
    });
    this.online.addEventListener("click", (e) => {
      const user = (e.target as Element).closest<HTMLElement>("[data-user]")?.dataset.user;
      if (user === undefined) return;
      app.setPane("chat");
      app.openDirect(user).catch((err) => app.notifier.toast(errorText(err), "error"));
    });

    const joinForm = byId<HTMLFormElement>("join-room-form");
    const roomInput = byId<HTMLInputElement>("room-name");
    joinForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const room = roomInput.value.trim().replace(/^#/, "");
      if (!room) return;
      app
        .joinRoom(room)
        .then(() => {
          roomInput.value = "";
          app.setPane("chat");
        })
        .catch((err) => app.notifier.toast(`Could not join ${room}: ${errorText(err)}`, "error"));
    });
    const dmForm = byId<HTMLFormElement>("open-dm-form");
    const dmInput = byId<HTMLInputElement>("dm-user");
    dmForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const user = dmInput.value.trim().replace(/^@/, "");
      if (!user) return;
      app
        .openDirect(user)
        .then(() => {
          dmInput.value = "";
          app.setPane("chat");
        })
        .catch((err) => app.notifier.toast(`Could not message ${user}: ${errorText(err)}`, "error"));
    });

    const s = app.store;
    s.on("accounts", () => this.render());
    s.on("status", () => this.renderAccounts());
    s.on("selection", () => this.render());
    s.on("conversations", (id) => {
      this.renderAccounts();
      if (id === s.currentAccount) this.renderConversations();
    });
    s.on("online", (id) => {
      if (id === s.currentAccount) this.renderOnline();
    });
    s.on("methods", (id) => {
      if (id === s.currentAccount) this.renderOnline();
    });
  }

  render(): void {
    this.renderAccounts();
    this.renderConversations();
    this.renderOnline();
  }

  /** Re-rendering a list must not lose keyboard focus inside it. */
  private keepFocus(list: HTMLElement, attr: string, fn: () => void): void {
    const active = document.activeElement as HTMLElement | null;
    const key = active && list.contains(active) ? active.getAttribute(attr) : null;
    fn();
    if (key !== null) {
      const again = Array.from(list.querySelectorAll<HTMLElement>(`[${attr}]`)).find((el) => el.getAttribute(attr) === key);
      again?.focus();
    }
  }

  private renderAccounts(): void {
    const s = this.app.store;
    this.keepFocus(this.accounts, "data-account", () => {
      replace(this.accounts, ...s.orderedAccounts().map((st) => this.accountItem(st, st.id === s.currentAccount)));
    });
  }

  private accountItem(st: AccountState, current: boolean): HTMLLIElement {
    const a = st.account;
    const unread = st.unreadTotal();
    const label = hubLabel(a);
    const desc = `${a.displayName} on ${label}, ${stateWord(a.status)}${unread ? `, ${plural(unread, "unread message", "unread messages")}` : ""}`;
    return h(
      "li",
      { class: "nav-item" },
      h(
        "button",
        {
          type: "button",
          class: `nav-button account${current ? " current" : ""}`,
          "data-account": a.id,
          "aria-current": current ? "true" : false,
          "aria-label": desc,
        },
        h("span", { class: "status-dot", "data-state": a.status.state, "aria-hidden": "true" }),
        h(
          "span",
          { class: "nav-text" },
          h("span", { class: "nav-name" }, label),
          h("span", { class: "nav-sub" }, a.status.state === "connected" ? a.displayName : `${a.displayName} · ${stateWord(a.status)}`),
        ),
        unread ? h("span", { class: "badge", "aria-hidden": "true" }, unread > 999 ? "999+" : String(unread)) : null,
      ),
    );
  }

  private renderConversations(): void {
    const st = this.app.store.current();
    this.keepFocus(this.conversations, "data-key", () => {
      if (!st) {
        replace(this.conversations);
        return;
      }
      replace(this.conversations, ...st.orderedConversations().map((c) => this.conversationItem(c, c.key === st.current)));
    });
  }

  private conversationItem(c: Conversation, current: boolean): HTMLLIElement {
    const glyph = c.kind === "room" ? icon("hash") : c.kind === "direct" ? avatar(c.name, "small") : icon("globe");
    const desc = `${c.kind === "room" ? "Room " : c.kind === "direct" ? "Direct messages with " : ""}${c.name}${c.unread ? `, ${plural(c.unread, "unread message", "unread messages")}` : ""}`;
    return h(
      "li",
      { class: "nav-item" },
      h(
        "button",
        {
          type: "button",
          class: `nav-button conversation${current ? " current" : ""}${c.unread ? " has-unread" : ""}`,
          "data-key": c.key,
          "data-kind": c.kind,
          "aria-current": current ? "page" : false,
          "aria-label": desc,
        },
        h("span", { class: "nav-glyph" }, glyph),
        h("span", { class: "nav-text" }, h("span", { class: "nav-name" }, c.name)),
        c.unread ? h("span", { class: "badge", "aria-hidden": "true" }, c.unread > 999 ? "999+" : String(c.unread)) : null,
      ),
    );
  }

  private renderOnline(): void {
    const st = this.app.store.current();
    const people = st ? st.online.slice().sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" })) : [];
    this.onlineCount.textContent = people.length ? `(${people.length})` : "";
    const me = st?.account.displayName;
    this.keepFocus(this.online, "data-user", () => {
      // A hub without presence is said to have none, rather than shown as empty.
      const missing = st?.account.unavailable?.find((u) => u.feature === "presence");
      if (missing && people.length <= 1) {
        replace(
          this.online,
          h("li", { class: "nav-empty", id: "presence-unavailable" }, `This hub does not say who is online (it answered: ${missing.reason}).`),
        );
        return;
      }
      if (people.length === 0) {
        replace(this.online, h("li", { class: "nav-empty" }, "Nobody else is here yet."));
        return;
      }
      replace(
        this.online,
        ...people.map((name) =>
          name === me
            ? h(
                "li",
                { class: "nav-item person me" },
                h("span", { class: "nav-static" }, avatar(name, "small"), h("span", { class: "nav-name" }, name), h("span", { class: "muted" }, " (you)")),
              )
            : h(
                "li",
                { class: "nav-item person" },
                h(
                  "button",
                  { type: "button", class: "nav-button", "data-user": name, "aria-label": `Message ${name} directly` },
                  avatar(name, "small"),
                  h("span", { class: "nav-text" }, h("span", { class: "nav-name" }, name)),
                  h("span", { class: "presence-dot", "aria-hidden": "true" }),
                ),
              ),
        ),
      );
    });
  }
}
