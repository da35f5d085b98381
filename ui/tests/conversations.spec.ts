import { expect, mock, test } from "./fixtures";

test.describe("people, rooms and direct messages", () => {
  test("a presence event while the online list is still loading is not overwritten by the older answer", async ({ hub, page }) => {
    // dave joins while the start's `online` call is out: its answer (alice, bob, carol) is older.
    await hub.open({ onlineDelay: 300, joinWhileOnline: "dave" });
    await hub.sidebar();
    await expect(page.locator("#online [data-user] .nav-name")).toHaveText(["bob", "carol", "dave"]);
  });

  test("presence: join/leave notices and the online list", async ({ hub, page }) => {
    await hub.open();
    await mock(page, "presence", 1, "dave", true);
    await expect(page.locator("#notices")).toContainText("dave joined");
    await hub.shot("presence-notice");
    await hub.sidebar();
    await expect(page.locator("#online [data-user] .nav-name")).toHaveText(["bob", "carol", "dave"]);
    await expect(page.locator("#online .me")).toContainText("alice");
    await expect(page.locator("#online-count")).toHaveText("(4)");
    await mock(page, "presence", 1, "bob", false);
    await expect(page.locator("#online [data-user] .nav-name")).toHaveText(["carol", "dave"]);
    if (hub.phone) await page.locator("#conversations [data-key='broadcast']").click();
    await expect(page.locator("#notices")).toContainText("bob left");
  });

  test("rooms: join, talk, leave", async ({ hub, page }) => {
    await hub.open();
    await hub.sidebar();
    await page.locator("#room-name").fill("#rust");
    await page.locator("#room-name").press("Enter");
    await expect(page.locator("#chat-title")).toHaveText("# rust");
    expect((await hub.calls("join_room"))[0]!.args).toEqual({ account: 1, room: "rust" });
    await expect(page.locator("#empty-state")).toBeVisible();
    await expect(page.locator("#broadcast")).toHaveAttribute("aria-label", "Send to room rust");
    await page.locator("#composer").fill("hello room");
    await page.locator("#composer").press("Enter");
    await expect(page.locator("#messages li.message .body")).toHaveText(["hello room"]);
    expect((await hub.calls("send"))[0]!.args).toMatchObject({ conversation: "room:rust" });
    await hub.sidebar();
    await expect(page.locator("#conversations [data-key='room:rust']")).toBeVisible();

    await page.locator("#conversations [data-key='room:rust']").click();
    await page.locator("#leave-room").click();
    expect((await hub.calls("leave_room"))[0]!.args).toEqual({ account: 1, room: "rust" });
    await expect(page.locator("#chat-title")).toHaveText("Everyone");
    await expect(page.locator("#leave-room")).toBeHidden();
    await hub.sidebar();
    await expect(page.locator("#conversations [data-key='room:rust']")).toHaveCount(0);
  });

  test("direct messages from the online list and by name", async ({ hub, page }) => {
    await hub.open();
    await hub.sidebar();
    await page.locator("#online [data-user='carol']").click();
    await expect(page.locator("#chat-title")).toHaveText("@ carol");
    expect((await hub.calls("open_direct"))[0]!.args).toEqual({ account: 1, user: "carol" });
    await page.locator("#composer").fill("psst");
    await page.locator("#broadcast").click();
    expect((await hub.calls("send"))[0]!.args).toMatchObject({ conversation: "dm:carol", text: "psst" });

    await hub.sidebar();
    await page.locator("#dm-user").fill("@frank");
    await page.locator("#open-dm").click();
    await expect(page.locator("#chat-title")).toHaveText("@ frank");
    expect((await hub.calls("open_direct"))[1]!.args).toEqual({ account: 1, user: "frank" });
    await hub.sidebar();
    await expect(page.locator("#conversations [data-kind='direct']")).toHaveCount(3);
  });

  test("unread counts per conversation and per hub; mark_read when shown at the bottom", async ({ hub, page }) => {
    await hub.open({ secondAccount: true });
    await mock(page, "receive", 1, "room:general", "carol", "one");
    await mock(page, "receive", 1, "room:general", "carol", "two");
    await mock(page, "receive", 1, "dm:bob", "bob", "are you there?");
    await mock(page, "receive", 2, "broadcast", "yann", "hello from the other hub");
    await hub.sidebar();
    await expect(page.locator("#conversations [data-key='room:general'] .badge")).toHaveText("2");
    await expect(page.locator("#conversations [data-key='dm:bob'] .badge")).toHaveText("1");
    await expect(page.locator("#conversations [data-key='room:general']")).toHaveAttribute("aria-label", /2 unread messages/);
    await expect(page.locator("#accounts [data-account='1'] .badge")).toHaveText("3");
    await expect(page.locator("#accounts [data-account='2'] .badge")).toHaveText("1");
    // The shown conversation (Everyone) does not count: it is read as it arrives.
    await mock(page, "receive", 1, "broadcast", "dave", "in view");
    await expect.poll(async () => (await hub.calls("mark_read")).some((c) => c.args.conversation === "broadcast")).toBe(true);
    await expect(page.locator("#conversations [data-key='broadcast'] .badge")).toHaveCount(0);
    await hub.shot("unread");

    await page.locator("#conversations [data-key='room:general']").click();
    await expect(page.locator("#messages li.message .body").last()).toHaveText("two");
    await expect.poll(async () => (await hub.calls("mark_read")).filter((c) => c.args.conversation === "room:general").length).toBe(1);
    const call = (await hub.calls("mark_read")).find((c) => c.args.conversation === "room:general")!;
    const seqOfTwo = await page.locator("#messages li.message").last().getAttribute("data-seq");
    expect(call.args).toEqual({ account: 1, conversation: "room:general", seq: Number(seqOfTwo) });
    await hub.sidebar();
    await expect(page.locator("#conversations [data-key='room:general'] .badge")).toHaveCount(0);
    await expect(page.locator("#accounts [data-account='1'] .badge")).toHaveText("1");

    // The other hub.
    await page.locator("#accounts [data-account='2']").click();
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com/hub");
    await expect(page.locator("#messages li.message .body").last()).toHaveText("hello from the other hub");
    await hub.sidebar();
    await expect(page.locator("#accounts [data-account='2'] .badge")).toHaveCount(0);
  });

  test("search: results are clickable and jump to the message", async ({ hub, page }) => {
    await hub.open({ history: 3000 });
    await page.keyboard.press("Control+k");
    const input = page.locator("#search-input");
    await expect(input).toBeFocused();
    await input.fill("History message 1234");
    await expect(page.locator("#search-results .result-button")).toHaveCount(1);
    await expect(page.locator("#search-status")).toHaveText("1 message found");
    await hub.shot("search");
    const calls = await hub.calls("search");
    expect(calls[calls.length - 1]!.args).toMatchObject({ account: 1, query: "History message 1234" });
    await page.locator("#search-results .result-button").click();
    await expect(page.locator("#search-dialog")).toBeHidden();
    const row = page.locator("#messages li.message", { hasText: "History message 1234" });
    await expect(row).toBeInViewport();
    await expect(row).toHaveClass(/highlight/);
    // Paging back to it kept the DOM small.
    expect(await page.locator("#messages li.message").count()).toBeLessThan(200);

    // A result in another conversation opens it.
    await page.keyboard.press("Control+k");
    await input.fill("welcome");
    await expect(page.locator("#search-results .result-button")).toHaveCount(1);
    await expect(page.locator("#search-results .result-button")).toContainText("Welcome to #general");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    await expect(page.locator("#chat-title")).toHaveText("# general");
    await page.keyboard.press("Control+k");
    await input.fill("no such thing anywhere");
    await expect(page.locator("#search-status")).toContainText("Nothing found");
  });
});
