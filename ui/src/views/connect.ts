// The connect screen: the first run, or another hub added with #add-account.

import type { Family, NewAccount, Protocol, Transport } from "../api";
import { caPemProblem, errorText, hubNameProblem } from "../api";
import type { App } from "../app";
import { byId, setInvalid, setText } from "../dom";

/** Accepts an empty address (the built-in hub) or an http(s)/ws(s) URL; returns an error or null. */
export function checkHubUrl(value: string): string | null {
  const v = value.trim();
  if (!v) return null;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return "Enter a full address such as https://chat.example.com/hub, or leave it empty.";
  }
  if (!["http:", "https:", "ws:", "wss:"].includes(u.protocol)) return "The address must start with https:// or http://.";
  return null;
}

export class ConnectView {
  private readonly form = byId<HTMLFormElement>("connect-form");
  private readonly url = byId<HTMLInputElement>("hub-url");
  private readonly name = byId<HTMLInputElement>("display-name");
  private readonly token = byId<HTMLInputElement>("token");
  private readonly transport = byId<HTMLSelectElement>("transport");
  private readonly protocol = byId<HTMLSelectElement>("protocol");
  private readonly family = byId<HTMLSelectElement>("family");
  private readonly hubName = byId<HTMLInputElement>("connect-hub-name");
  private readonly ca = byId<HTMLTextAreaElement>("connect-ca");
  private readonly error = byId("connect-error");
  private readonly submit = byId<HTMLButtonElement>("connect-submit");
  private readonly cancel = byId<HTMLButtonElement>("connect-cancel");
  private readonly tokenHint = byId("token-hint");
  private returnFocus: HTMLElement | null = null;

  constructor(private readonly app: App) {
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.onSubmit();
    });
    this.cancel.addEventListener("click", () => this.close());
    this.form.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !this.cancel.hidden) {
        e.preventDefault();
        this.close();
      }
    });
    for (const input of [this.url, this.name, this.hubName, this.ca]) {
      input.addEventListener("input", () => {
        setInvalid(input, false);
        setText(this.error, "");
      });
    }
    byId("add-account").addEventListener("click", () => this.open());
  }

  /** Shows the screen (with Cancel when there are hubs to go back to). */
  open(): void {
    this.returnFocus = document.activeElement as HTMLElement | null;
    this.form.reset();
    setText(this.error, "");
    this.cancel.hidden = this.app.store.accounts.size === 0;
    this.renderTokenHint();
    this.app.showScreen("connect");
    requestAnimationFrame(() => (this.cancel.hidden ? this.name : this.url).focus());
  }

  /** Called when the screen becomes visible for another reason (first run). */
  prepare(): void {
    this.cancel.hidden = this.app.store.accounts.size === 0;
    this.renderTokenHint();
    if (this.cancel.hidden) requestAnimationFrame(() => this.name.focus());
  }

  private close(): void {
    this.app.showScreen("chat");
    (this.returnFocus ?? byId("composer")).focus();
  }

  private renderTokenHint(): void {
    const k = this.app.store.info?.keychain;
    setText(
      this.tokenHint,
      !k
        ? "Only if the hub asks for one."
        : k.available
          ? "Only if the hub asks for one. Kept in the system keychain."
          : `Only if the hub asks for one. The system keychain is not available${k.detail ? ` (${k.detail})` : ""}, so it is kept for this session only.`,
    );
  }

  private async onSubmit(): Promise<void> {
    const urlError = checkHubUrl(this.url.value);
    const name = this.name.value.trim();
    setInvalid(this.url, urlError !== null);
    setInvalid(this.name, !name);
    if (urlError) {
      setText(this.error, urlError);
      this.url.focus();
      return;
    }
    if (!name) {
      setText(this.error, "Choose a display name: it is how others see you.");
      this.name.focus();
      return;
    }
    const family = this.family.value as Family;
    const hubName = family === "core" ? "" : this.hubName.value.trim();
    const hubNameError = hubNameProblem(hubName);
    setInvalid(this.hubName, hubNameError !== null);
    if (hubNameError) {
      setText(this.error, hubNameError);
      this.hubName.closest("details")?.setAttribute("open", "");
      this.hubName.focus();
      return;
    }
    const caPem = this.ca.value.trim();
    const caError = caPemProblem(caPem);
    setInvalid(this.ca, !!caError);
    if (caError) {
      setText(this.error, caError);
      this.ca.closest("details")?.setAttribute("open", "");
      this.ca.focus();
      return;
    }
    const input: NewAccount = {
      url: this.url.value.trim() || null,
      displayName: name,
      token: this.token.value ? this.token.value : null,
      protocol: this.protocol.value as Protocol,
      transport: this.transport.value as Transport,
      family,
      hubName: hubName || null,
      caPem: caPem || null,
    };
    this.submit.disabled = true;
    setText(this.submit, "Connecting…");
    setText(this.error, "");
    try {
      await this.app.addAccount(input);
      this.form.reset();
      byId("composer").focus();
    } catch (err) {
      setText(this.error, `Could not add the hub: ${errorText(err)}`);
    } finally {
      this.submit.disabled = false;
      setText(this.submit, "Connect");
    }
  }
}
