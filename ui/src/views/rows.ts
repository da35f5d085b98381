// One message row. Everything from the hub goes in through textContent.

import type { Message } from "../api";
import { h } from "../dom";
import { clockTime, dayKey, dayLabel, fullTime, hueOf, initials } from "../format";
import type { RowRenderer } from "../virtual-list";

/** Consecutive messages from one sender within this window share one header. */
const GROUP_MS = 5 * 60_000;

const GROUPED = 1;
const NEW_DAY = 2;

export function avatar(name: string, extra = ""): HTMLElement {
  return h("span", { class: `avatar hue-${hueOf(name)} ${extra}`.trim(), "aria-hidden": "true" }, initials(name));
}

function stateLabel(m: Message): string {
  switch (m.state) {
    case "sending":
      return "Sending…";
    case "sent":
      return "Sent";
    case "failed":
      return m.error ? `Not sent: ${m.error}` : "Not sent";
    case "received":
      return "";
  }
}

export const messageRows: RowRenderer = {
  variant(m, prev) {
    let v = 0;
    if (!prev || dayKey(prev.createdAt) !== dayKey(m.createdAt)) v |= NEW_DAY;
    else if (
      prev.sender === m.sender &&
      prev.outgoing === m.outgoing &&
      prev.state !== "failed" &&
      m.createdAt - prev.createdAt < GROUP_MS
    )
      v |= GROUPED;
    return v;
  },

  estimate(m, variant) {
    // A rough guess from the text's length and line breaks; real heights replace it.
    const lines = m.body.split("\n").reduce((n, line) => n + Math.max(1, Math.ceil(line.length / 70)), 0);
    let hgt = 22 * lines + (variant & GROUPED ? 6 : 34);
    if (variant & NEW_DAY) hgt += 40;
    if (m.state === "failed") hgt += 44;
    return hgt;
  },

  render(m, _prev, variant) {
    const grouped = (variant & GROUPED) !== 0;
    const li = h("li", {
      class: `message${m.outgoing ? " outgoing" : ""}${grouped ? " grouped" : ""}`,
      role: "listitem",
      "data-id": m.id,
      "data-seq": m.seq,
      "data-state": m.state,
    });
    if (variant & NEW_DAY) {
      li.append(h("div", { class: "day-divider", role: "separator" }, h("span", {}, dayLabel(m.createdAt))));
    }
    const row = h("div", { class: "message-row" });
    row.append(grouped ? h("span", { class: "avatar-gap", "aria-hidden": "true" }) : avatar(m.sender));
    const content = h("div", { class: "message-content" });
    const meta = h(
      "div",
      { class: grouped ? "meta sr-only" : "meta" },
      h("span", { class: "sender" }, m.sender),
      h("time", { class: "time", datetime: new Date(m.createdAt).toISOString(), title: fullTime(m.createdAt) }, clockTime(m.createdAt)),
    );
    content.append(meta, h("p", { class: "body" }, m.body));
    if (m.outgoing && m.state !== "received") {
      const delivery = h("div", { class: `delivery ${m.state}` }, h("span", { class: "state-label" }, stateLabel(m)));
      if (m.state === "failed") {
        delivery.append(
          h("button", { class: "btn small retry", type: "button", "data-action": "retry" }, "Retry"),
          h("button", { class: "btn small ghost discard", type: "button", "data-action": "discard" }, "Discard"),
        );
      }
      content.append(delivery);
    }
    row.append(content);
    li.append(row);
    return li;
  },
};
