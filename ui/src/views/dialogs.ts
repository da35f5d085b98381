// Modal dialogs: search (Ctrl+K), keyboard help (?), hub settings.

import type { Account, Family, InspectorEntry, Message, Methods, Preset } from "../api";
import { caPemProblem, errorText, hubNameProblem, kindOf, pemCount, peerOf, roomOf } from "../api";
import type { App } from "../app";
import { byId, h, icon, replace, setInvalid, setText } from "../dom";
import { clockTime, dayLabel, hubLabel, plural } from "../format";

/** Each preset's methods as the Advanced form shows them (the core's presets, written out). */
const PRESETS: Partial<Record<Preset, [string, string]>> = {
  auto: ["", ""],
  hubbub: ["Send(name,text)", "broadcastMessage(0,1)"],
  classicTutorial: ["Send(name,text)", "broadcastMessage(0,1), addNewMessageToPage(0,1)"],
  coreTutorial: ["SendMessage(name,text)", "ReceiveMessage(0,1)"],
};

function openDialog(d: HTMLDialogElement): void {
  if (!d.open) d.showModal();
}

export class SearchDialog {
  private readonly dialog = byId<HTMLDialogElement>("search-dialog");
  private readonly input = byId<HTMLInputElement>("search-input");
  private readonly results = byId<HTMLUListElement>("search-results");
  private readonly status = byId("search-status");
  private timer = 0;
  private seq = 0;
  private found: Message[] = [];

  constructor(private readonly app: App) {
    byId("search-close").append(icon("close"));
    byId("search-close").addEventListener("click", () => this.dialog.close());
    byId("open-search").addEventListener("click", () => this.open());
    byId<HTMLFormElement>("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.run();
    });
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = window.setTimeout(() => void this.run(), 200);
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") {
        const first = this.results.querySelector<HTMLButtonElement>("button");
        if (first) {
          e.preventDefault();
          first.focus();
        }
      }
    });
    this.results.addEventListener("keydown", (e) => {
      const buttons = Array.from(this.results.querySelectorAll<HTMLButtonElement>("button"));
      const i = buttons.indexOf(document.activeElement as HTMLButtonElement);
      if (i < 0) return;
      if (e.key === "ArrowDown" && i + 1 < buttons.length) {
        e.preventDefault();
        buttons[i + 1]!.focus();
      } else if (e.key === "ArrowUp") {
        e.preventDefault();
        (i > 0 ? buttons[i - 1]! : this.input).focus();
      }
    });
    this.results.addEventListener("click", (e) => {
      const idx = (e.target as Element).closest<HTMLElement>("[data-index]")?.dataset.index;
      const m = idx === undefined ? undefined : this.found[Number(idx)];
      if (!m) return;
      this.dialog.close();
      this.app.setPane("chat");
      void this.app.jumpTo(m).then(() => byId("scroller").focus());
    });
  }

  open(): void {
    openDialog(this.dialog);
    this.input.focus();
    this.input.select();
  }

  private async run(): Promise<void> {
    const query = this.input.value.trim();
    const mine = ++this.seq;
    if (!query) {
      this.found = [];
      replace(this.results);
      setText(this.status, "");
      return;
    }
    setText(this.status, "Searching…");
    try {
      const found = await this.app.search(query);
      if (mine !== this.seq) return;
      this.found = found;
      setText(this.status, found.length ? plural(found.length, "message found", "messages found") : `Nothing found for “${query}”.`);
      replace(this.results, ...found.map((m, i) => this.item(m, i)));
    } catch (err) {
      if (mine === this.seq) setText(this.status, `Search failed: ${errorText(err)}`);
    }
  }

  private item(m: Message, index: number): HTMLLIElement {
    const st = this.app.store.current();
    const conv = st?.conversations.get(m.conversation);
    const kind = kindOf(m.conversation);
    const where =
      kind === "room" ? `# ${conv?.name ?? roomOf(m.conversation)}` : kind === "direct" ? `@ ${conv?.name ?? peerOf(m.conversation)}` : "Everyone";
    return h(
      "li",
      { class: "search-result" },
      h(
        "button",
        { type: "button", class: "result-button", "data-index": index, "data-id": m.id },
        h(
          "span",
          { class: "result-meta" },
          h("span", { class: "sender" }, m.sender),
          h("span", { class: "muted" }, ` · ${where} · ${dayLabel(m.createdAt)} ${clockTime(m.createdAt)}`),
        ),
        h("span", { class: "result-body" }, m.body),
      ),
    );
  }
}

export class HelpDialog {
  private readonly dialog = byId<HTMLDialogElement>("help-dialog");

  constructor(app: App) {
    byId("help-close").append(icon("close"));
    byId("help-close").addEventListener("click", () => this.dialog.close());
    byId("open-help").addEventListener("click", () => this.open());
    app.store.on("accounts", () => {
      const info = app.store.info;
      if (info) setText(byId("app-version"), `Hubbub ${info.version} (${info.platform})`);
    });
  }

  open(): void {
    openDialog(this.dialog);
    byId("help-close").focus();
  }
}

export class AccountDialog {
  private readonly dialog = byId<HTMLDialogElement>("account-dialog");
  private readonly details = byId("account-details");
  private readonly token = byId<HTMLInputElement>("account-token");
  private readonly hint = byId("account-token-hint");
  private readonly remove = byId<HTMLButtonElement>("remove-account");
  private confirmRemove = false;

  constructor(private readonly app: App) {
    byId("account-close").append(icon("close"));
    byId("account-close").addEventListener("click", () => this.dialog.close());
    byId("open-account").addEventListener("click", () => this.open());
    byId<HTMLFormElement>("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveToken(this.token.value || null);
    });
    byId("forget-token").addEventListener("click", () => void this.saveToken(null));
    this.remove.addEventListener("click", () => void this.onRemove());
    app.store.on("accounts", () => {
      if (this.dialog.open) this.render();
    });
    app.store.on("status", () => {
      if (this.dialog.open) this.render();
    });
    app.store.on("methods", () => {
      if (this.dialog.open) this.render();
    });
    byId<HTMLFormElement>("methods-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveMethods();
    });
    byId<HTMLSelectElement>("methods-preset").addEventListener("change", () => this.presetChanged());
    byId<HTMLFormElement>("family-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveFamily();
    });
    byId<HTMLSelectElement>("hub-family").addEventListener("change", () => this.familyChanged());
    byId<HTMLInputElement>("hub-name").addEventListener("input", () => this.checkHubName());
    byId<HTMLFormElement>("ca-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.saveCa();
    });
    byId<HTMLTextAreaElement>("hub-ca").addEventListener("input", () => this.showCaProblem(null));
  }

  open(): void {
    this.confirmRemove = false;
    this.token.value = "";
    this.fillMethods();
    this.fillFamily();
    this.fillCa();
    this.render();
    openDialog(this.dialog);
    byId("account-close").focus();
  }

  private render(): void {
    const st = this.app.store.current();
    if (!st) return;
    const a = st.account;
    const rows: [string, string][] = [
      ["Hub", a.local ? `Built-in local hub${this.app.store.info?.localHubUrl ? ` (${this.app.store.info.localHubUrl})` : ""}` : a.url],
      ["Display name", a.displayName],
      ["Transport", a.status.transport ? `${a.transport} (using ${a.status.transport})` : a.transport],
      ["Protocol", a.protocol === "messagepack" ? "MessagePack" : "JSON"],
      ["Protocol family", familyLabel(a)],
      ["CA certificate", caLabel(a)],
      ["Token", a.token === "none" ? "None" : a.token === "keychain" ? "In the system keychain" : "For this session only"],
    ];
    replace(this.details, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    setText(byId("account-title"), `Settings for ${hubLabel(a)}`);
    const k = this.app.store.info?.keychain;
    setText(
      this.hint,
      k && !k.available ? `The system keychain is not available${k.detail ? ` (${k.detail})` : ""}: a token is kept for this session only.` : "Saved in the system keychain.",
    );
    byId("forget-token").hidden = a.token === "none";
    // Features the hub lacks are said, with the hub's answer, instead of showing empty lists.
    const missing = a.unavailable ?? [];
    setText(
      byId("unavailable"),
      missing.length
        ? `This hub has no ${missing.map((u) => u.feature).join(", ")} (it answered: ${missing.map((u) => u.reason).join("; ")}). Messages sent while you are away are not kept for you, and a message resent after a lost answer may arrive twice on a hub that ignores message ids.`
        : "",
    );
    setText(this.remove, this.confirmRemove ? "Press again to remove this hub and its history" : "Remove this hub");
  }

  /** Puts the account's protocol family and classic hub name in the Advanced form. */
  private fillFamily(): void {
    const a = this.app.store.current()?.account;
    if (!a) return;
    byId<HTMLSelectElement>("hub-family").value = a.family ?? "auto";
    byId<HTMLInputElement>("hub-name").value = a.hubName ?? "";
    this.familyChanged();
    this.checkHubName();
  }

  /** The hub name matters to classic hubs only: hidden when ASP.NET Core is forced. */
  private familyChanged(): void {
    const core = byId<HTMLSelectElement>("hub-family").value === "core";
    byId("hub-name").hidden = core;
    byId("hub-name-label").hidden = core;
    if (core) this.showHubNameProblem(null);
    else this.checkHubName();
  }

  private checkHubName(): boolean {
    if (byId<HTMLSelectElement>("hub-family").value === "core") return true;
    const problem = hubNameProblem(byId<HTMLInputElement>("hub-name").value);
    this.showHubNameProblem(problem);
    return problem === null;
  }

  private showHubNameProblem(problem: string | null): void {
    const input = byId<HTMLInputElement>("hub-name");
    setInvalid(input, !!problem);
    setText(byId("family-error"), problem ?? "");
  }

  private async saveFamily(): Promise<void> {
    const st = this.app.store.current();
    if (!st) return;
    if (!this.checkHubName()) {
      byId<HTMLInputElement>("hub-name").focus();
      return;
    }
    const family = byId<HTMLSelectElement>("hub-family").value as Family;
    // Under ASP.NET Core the name is not used; an empty field is the default (chatHub).
    const name = byId<HTMLInputElement>("hub-name").value.trim();
    const hubName = family === "core" || !name ? null : name;
    try {
      await this.app.setFamily(st.id, family, hubName);
      this.fillFamily();
      this.app.notifier.toast("Protocol saved; reconnecting.", "info");
    } catch (err) {
      this.showHubNameProblem(errorText(err));
    }
  }

  /** Puts the account's extra CA in the Advanced form. */
  private fillCa(): void {
    const a = this.app.store.current()?.account;
    if (!a) return;
    byId<HTMLTextAreaElement>("hub-ca").value = a.caPem ?? "";
    this.showCaProblem(null);
  }

  private showCaProblem(problem: string | null): void {
    const input = byId<HTMLTextAreaElement>("hub-ca");
    setInvalid(input, !!problem);
    setText(byId("ca-error"), problem ?? "");
  }

  /** Saves the CA; a refused one stays in the field with why, and the setting in use stays. */
  private async saveCa(): Promise<void> {
    const st = this.app.store.current();
    if (!st) return;
    const input = byId<HTMLTextAreaElement>("hub-ca");
    const text = input.value.trim();
    const problem = caPemProblem(text);
    if (problem) {
      this.showCaProblem(problem);
      input.focus();
      return;
    }
    try {
      await this.app.setCa(st.id, text || null);
      this.fillCa();
      this.app.notifier.toast(text ? "CA certificate saved; reconnecting." : "CA certificate removed; reconnecting.", "info");
    } catch (err) {
      this.showCaProblem(errorText(err));
      input.focus();
    }
  }

  /** Puts the account's methods in the Advanced form (what auto found, once it did). */
  private fillMethods(): void {
    const a = this.app.store.current()?.account;
    if (!a?.methods) return;
    byId<HTMLSelectElement>("methods-preset").value = a.methods.preset;
    byId<HTMLInputElement>("send-method").value = a.methods.send ?? "";
    byId<HTMLInputElement>("receive-methods").value = a.methods.receive.join(", ");
  }

  private presetChanged(): void {
    const preset = byId<HTMLSelectElement>("methods-preset").value as Preset;
    const chosen = PRESETS[preset];
    if (chosen) {
      byId<HTMLInputElement>("send-method").value = chosen[0];
      byId<HTMLInputElement>("receive-methods").value = chosen[1];
    }
  }

  private async saveMethods(): Promise<void> {
    const st = this.app.store.current();
    if (!st) return;
    let preset = byId<HTMLSelectElement>("methods-preset").value as Preset;
    const send = byId<HTMLInputElement>("send-method").value.trim();
    // Commas inside a method's parentheses do not separate methods.
    const receive = byId<HTMLInputElement>("receive-methods")
      .value.split(/,(?![^(]*\))/)
      .map((r) => r.trim())
      .filter((r) => r);
    // A preset whose methods were edited by hand is custom.
    const row = PRESETS[preset];
    if (row && preset !== "auto" && (row[0] !== send || row[1] !== receive.join(", "))) preset = "custom";
    const methods: Methods = { preset, send: send || null, receive };
    try {
      await this.app.setMethods(st.id, methods);
      this.fillMethods();
      this.app.notifier.toast("Hub methods saved.", "info");
    } catch (err) {
      this.app.notifier.toast(`Could not save the methods: ${errorText(err)}`, "error");
    }
  }

  private async saveToken(token: string | null): Promise<void> {
    const st = this.app.store.current();
    if (!st) return;
    try {
      await this.app.setToken(st.id, token);
      this.token.value = "";
      this.app.notifier.toast(token ? "Token saved." : "Token forgotten.", "info");
      this.render();
    } catch (err) {
      this.app.notifier.toast(`Could not save the token: ${errorText(err)}`, "error");
    }
  }

  private async onRemove(): Promise<void> {
    const st = this.app.store.current();
    if (!st) return;
    if (!this.confirmRemove) {
      this.confirmRemove = true;
      this.render();
      return;
    }
    try {
      this.dialog.close();
      await this.app.removeAccount(st.id);
    } catch (err) {
      this.app.notifier.toast(`Could not remove the hub: ${errorText(err)}`, "error");
    }
  }
}

/** The account's extra CA as the settings show it. */
export function caLabel(a: Account): string {
  const n = pemCount(a.caPem ?? null);
  if (!n) return "The system's only";
  return `${n} certificate${n === 1 ? "" : "s"}, besides the system's`;
}

/** The account's protocol family as the settings show it, with what auto found. */
export function familyLabel(a: Account): string {
  const names = { core: "ASP.NET Core SignalR", classic: "Classic ASP.NET SignalR 2.x" } as const;
  const found = a.status?.family ? names[a.status.family] : null;
  const hub = a.hubName ?? "chatHub";
  const classic = (a.family === "classic" || (a.family === "auto" && a.status?.family === "classic")) ? `, hub ${hub}` : "";
  if (a.family === "auto" || !a.family) return found ? `Auto: ${found}${classic}` : "Auto";
  return `${names[a.family]}${classic}`;
}

/** Everything the current hub sent, as it came, and a console to invoke any of its methods. */
export class InspectorDialog {
  private readonly dialog = byId<HTMLDialogElement>("inspector-dialog");
  private readonly log = byId<HTMLOListElement>("inspector-log");
  private readonly result = byId("console-result");
  private shown = 0;
  private account: number | null = null;

  constructor(private readonly app: App) {
    byId("inspector-close").append(icon("close"));
    byId("inspector-close").addEventListener("click", () => this.dialog.close());
    byId("open-inspector").addEventListener("click", () => this.open());
    app.store.on("inspector", (id) => {
      if (this.dialog.open && id === this.account) this.render();
    });
    byId<HTMLFormElement>("console-form").addEventListener("submit", (e) => {
      e.preventDefault();
      void this.invoke();
    });
  }

  open(): void {
    this.account = this.app.store.currentAccount;
    this.shown = 0;
    replace(this.log);
    setText(this.result, "");
    this.render();
    openDialog(this.dialog);
    byId("console-method").focus();
  }

  private render(): void {
    const st = this.account === null ? null : this.app.store.accounts.get(this.account);
    if (!st) return;
    const entries = st.inspector;
    // `shown` counts entries ever rendered; the store keeps the newest ones only. Append what
    // is new, then drop the rows of entries the store no longer holds (oldest first).
    const fresh = Math.min(entries.length, st.inspectorTotal - this.shown);
    for (const entry of entries.slice(entries.length - fresh)) this.log.append(this.row(entry));
    while (this.log.children.length > entries.length) this.log.firstElementChild!.remove();
    this.shown = st.inspectorTotal;
    this.log.lastElementChild?.scrollIntoView({ block: "nearest" });
  }

  private row(entry: InspectorEntry): HTMLLIElement {
    const time = clockTime(entry.atMs);
    if (entry.kind === "invocation") {
      return h(
        "li",
        { class: "inspector-entry", "data-kind": "invocation", "data-target": entry.target, "data-chat": entry.chat },
        h("span", { class: "muted" }, `${time} `),
        h("span", { class: "target" }, entry.target),
        h("code", { class: "arguments" }, JSON.stringify(entry.arguments)),
        entry.chat ? h("span", { class: "muted" }, " (chat message)") : null,
      );
    }
    const name = typeof entry.event.event === "string" ? entry.event.event : "event";
    return h(
      "li",
      { class: "inspector-entry", "data-kind": "connection" },
      h("span", { class: "muted" }, `${time} `),
      h("span", { class: "target" }, `connection: ${name}`),
      h("code", { class: "arguments" }, JSON.stringify(entry.event)),
    );
  }

  private async invoke(): Promise<void> {
    const id = this.account;
    if (id === null) return;
    const method = byId<HTMLInputElement>("console-method").value.trim();
    const text = byId<HTMLInputElement>("console-args").value.trim();
    if (!method) {
      this.show("error", "Name the method to invoke.");
      return;
    }
    let args: unknown[] = [];
    if (text) {
      try {
        const parsed: unknown = JSON.parse(text);
        args = Array.isArray(parsed) ? parsed : [parsed];
      } catch (err) {
        this.show("error", `The arguments are not JSON: ${String(err)}`);
        return;
      }
    }
    this.show("pending", `Invoking ${method}…`);
    try {
      const value = await this.app.invokeHub(id, method, args);
      this.show("result", JSON.stringify(value === undefined ? null : value));
    } catch (err) {
      this.show("error", errorText(err));
    }
  }

  private show(state: string, text: string): void {
    this.result.dataset.state = state;
    setText(this.result, text);
  }
}
