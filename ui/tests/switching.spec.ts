import type { Page } from "@playwright/test";
import { expect, mock, mockSet, test } from "./fixtures";

// Switching hubs while the shell has not answered yet (the mock holds chosen commands' answers
// until the test lets them go): what the header names is what the list shows and where the
// composer sends, and answers that come late change neither.

const last = (page: Page) => page.locator("#messages li.message").last().locator(".body");
const askedOf = async (hub: { calls(cmd: string): Promise<{ args: Record<string, unknown> }[]> }, cmd: string, account: number) =>
  (await hub.calls(cmd)).filter((c) => c.args.account === account).length;
const answeredOf = async (page: Page, cmd: string, account: number) =>
  (await mock<{ args: { account: number } }[]>(page, "answersOf", cmd)).filter((c) => c.args.account === account).length;

test.describe("switching hubs", () => {
  test("a message typed right after switching hubs goes to the hub shown, both ways", async ({ hub, page }) => {
    test.skip(hub.phone, "hardware keyboards are a desktop matter");
    await hub.open({ secondAccount: true });
    // The shell is slow to say who is online: a hub's conversations and people come late.
    await mockSet(page, "holding", ["online"]);

    await page.keyboard.press("Alt+Shift+ArrowDown");
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com");
    await page.locator("#composer").focus();
    await page.keyboard.type("to zoe's hub");
    await page.keyboard.press("Enter");
    await expect.poll(async () => (await hub.calls("send")).length).toBe(1);
    expect((await hub.calls("send"))[0]!.args).toEqual({ account: 2, conversation: "broadcast", text: "to zoe's hub" });
    // The hub's late answers land (then its first page, which the message joins) and keep it.
    expect(await mock(page, "answer", "online")).toBe(1);
    await expect.poll(() => answeredOf(page, "online", 2)).toBe(1);
    await expect(page.locator("#online [data-user] .nav-name")).toHaveText(["yann"]);
    await expect(last(page)).toHaveText("to zoe's hub");
    await expect(page.locator("#messages li.message", { hasText: "History message 40" })).toHaveCount(0);

    // And back to the local hub: the keyboard-only test's order, whose message once went to
    // chat.example.com, shown under the local hub's header, and then vanished from view.
    await page.keyboard.press("Alt+Shift+ArrowUp");
    await expect(page.locator("#chat-hub")).toContainText("Local hub");
    await page.locator("#composer").focus();
    await page.keyboard.type("back home");
    await page.keyboard.press("Enter");
    await expect(last(page)).toHaveText("back home");
    expect((await hub.calls("send"))[1]!.args).toEqual({ account: 1, conversation: "broadcast", text: "back home" });
    expect(await mock(page, "answer", "online")).toBe(1);
    await expect.poll(() => answeredOf(page, "online", 1)).toBe(2);
    await expect(last(page)).toHaveText("back home");
    await expect(page.locator("#messages li.message", { hasText: "to zoe's hub" })).toHaveCount(0);
  });

  test("a message sent before a hub's first page has come stays, with its newest state, when the page lands", async ({ hub, page }) => {
    test.skip(hub.phone, "hardware keyboards are a desktop matter");
    await hub.open({ secondAccount: true });
    await mockSet(page, "holding", ["online", "history"]);
    await mockSet(page, "hold", true);

    await page.keyboard.press("Alt+Shift+ArrowDown");
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com");
    await page.locator("#composer").focus();
    await page.keyboard.type("before the history");
    await page.keyboard.press("Enter");
    await expect.poll(async () => (await hub.calls("send")).length).toBe(1);
    expect((await hub.calls("send"))[0]!.args).toEqual({ account: 2, conversation: "broadcast", text: "before the history" });
    // Its conversations answer; the first page is asked now: it holds the message, sending.
    expect(await mock(page, "answer", "online")).toBe(1);
    await expect.poll(() => askedOf(hub, "history", 2)).toBe(1);
    // The hub acknowledges the message (the event comes) before the page does.
    await mock(page, "release");
    expect(await mock(page, "answer", "history")).toBe(1);
    await expect(page.locator("#messages li.message .body")).toHaveText([
      "History message 1",
      "History message 2",
      "History message 3",
      "History message 4",
      "History message 5",
      "before the history",
    ]);
    await expect(page.locator("#messages li.message").last()).toHaveAttribute("data-state", "sent");
  });

  test("a late first page of a hub already left does not replace the hub shown", async ({ hub, page }) => {
    test.skip(hub.phone, "hardware keyboards are a desktop matter");
    await hub.open({ secondAccount: true });
    await mockSet(page, "holding", ["history"]);
    // To zoe's hub, whose first page is asked, and back before it has come.
    await page.keyboard.press("Alt+Shift+ArrowDown");
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com");
    await expect.poll(() => askedOf(hub, "history", 2)).toBe(1);
    await page.keyboard.press("Alt+Shift+ArrowUp");
    await expect(page.locator("#chat-hub")).toContainText("Local hub");
    await page.locator("#composer").focus();
    await page.keyboard.type("stayed home");
    await page.keyboard.press("Enter");
    await expect(last(page)).toHaveText("stayed home");

    expect(await mock(page, "answer", "history")).toBe(1);
    await expect.poll(() => answeredOf(page, "history", 2)).toBe(1);
    await expect(page.locator("#chat-hub")).toContainText("Local hub");
    await expect(last(page)).toHaveText("stayed home");
    await expect(page.locator("#messages li.message", { hasText: "History message 40" })).toHaveCount(1);
    expect((await hub.calls("send")).map((c) => c.args.account)).toEqual([1]);
  });
});
