// Entry point: builds the views, wires them to the controller and starts talking to the shell.

import "./styles.css";
import { errorText } from "./api";
import { App } from "./app";
import { byId, setText } from "./dom";
import { stateWord, hubLabel } from "./format";
import { installShortcuts } from "./keyboard";
import { ChatView } from "./views/chat";
import { ConnectView } from "./views/connect";
import { AccountDialog, HelpDialog, InspectorDialog, SearchDialog } from "./views/dialogs";
import { Notices } from "./views/notices";
import { Sidebar } from "./views/sidebar";

const app = new App();
const notices = new Notices();
app.notifier = notices;

const root = byId("app");
const sidebar = new Sidebar(app);
const chat = new ChatView(app);
const connect = new ConnectView(app);
const search = new SearchDialog(app);
const help = new HelpDialog(app);
new AccountDialog(app);
new InspectorDialog(app);
installShortcuts(app, chat, search, help);

function renderView(): void {
  const screen = app.store.screen;
  root.dataset.screen = screen;
  root.dataset.pane = app.pane;
  byId("connect-view").hidden = screen !== "connect";
  byId("loading-view").hidden = screen !== "loading";
  byId("sidebar").hidden = screen !== "chat";
  byId("chat").hidden = screen !== "chat";
}
app.store.on("view", () => {
  const was = root.dataset.screen;
  renderView();
  if (app.store.screen === "connect" && was !== "connect") connect.prepare();
  if (app.store.screen === "chat") chat.renderHeader();
});
app.store.on("selection", () => chat.renderHeader());

// State changes are announced once each (the header's countdown itself stays quiet).
const lastState = new Map<number, string>();
const stateOf = (id: number) => {
  const status = app.store.accounts.get(id)!.account.status;
  return stateWord(status) + (status.slow ? ", slow connection" : "");
};
app.store.on("accounts", () => {
  for (const st of app.store.orderedAccounts()) if (!lastState.has(st.id)) lastState.set(st.id, stateOf(st.id));
});
app.store.on("status", (id) => {
  const st = app.store.accounts.get(id as number);
  if (!st) return;
  const word = stateOf(st.id);
  if (lastState.get(st.id) !== word) {
    notices.announce(`${hubLabel(st.account)}: ${word}`);
    lastState.set(st.id, word);
  }
});

renderView();
sidebar.render();
app.start().catch((err) => {
  setText(byId("loading-view"), `Hubbub could not start: ${errorText(err)}`);
  console.error(err);
});
