// Application-wide keyboard shortcuts (listed in the help dialog and the README).

import type { App } from "./app";
import type { ChatView } from "./views/chat";
import type { HelpDialog, SearchDialog } from "./views/dialogs";

function typingIn(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT";
}

export function installShortcuts(app: App, chat: ChatView, search: SearchDialog, help: HelpDialog): void {
  // The skip link focuses the message box itself: fragment navigation alone only scrolls in
  // some engines.
  document.querySelector(".skip-link")?.addEventListener("click", (e) => {
    e.preventDefault();
    chat.focusComposer();
  });
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing) return;
    const inChat = app.store.screen === "chat";
    const mod = e.ctrlKey || e.metaKey;
    const anyDialog = document.querySelector("dialog[open]") !== null;

    if (mod && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "k" && inChat) {
      e.preventDefault();
      search.open();
      return;
    }
    if ((mod && e.key === "/") || e.key === "F1" || (e.key === "?" && !mod && !typingIn(e.target))) {
      if (anyDialog && e.key === "?") return;
      e.preventDefault();
      help.open();
      return;
    }
    if (anyDialog || !inChat) return;
    if (e.altKey && !mod && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      e.preventDefault();
      const dir = e.key === "ArrowUp" ? -1 : 1;
      const keepListFocus = (document.activeElement as HTMLElement | null)?.closest("#conversations, #accounts");
      const step = e.shiftKey ? app.stepAccount(dir) : app.stepConversation(dir);
      void step.then(() => {
        app.setPane("chat");
        // Only if focus has not moved on meanwhile (the step is async): never steal it back.
        const now = document.activeElement;
        const unmoved = !now || now === document.body || now.closest("#conversations, #accounts");
        if (keepListFocus && unmoved) {
          const sel = e.shiftKey ? "#accounts .current" : "#conversations .current";
          document.querySelector<HTMLElement>(sel)?.focus();
        }
      });
      return;
    }
    if (e.altKey && !mod && e.key === "End") {
      e.preventDefault();
      chat.jumpToLatest();
      return;
    }
    if (e.key === "Escape" && !typingIn(e.target) && app.pane === "chat") {
      chat.focusComposer();
    }
  });

  // Dialogs hand focus back to the message box when they close.
  for (const d of document.querySelectorAll("dialog")) {
    d.addEventListener("close", () => {
      if (app.store.screen === "chat" && !document.querySelector("dialog[open]")) {
        const active = document.activeElement;
        if (!active || active === document.body) chat.focusComposer();
      }
    });
  }
}
