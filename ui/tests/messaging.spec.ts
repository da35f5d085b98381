import { expect, mock, mockSet, test } from "./fixtures";

test.describe("sending", () => {
  test("Enter sends, Shift+Enter adds a line; sending turns into sent", async ({ hub, page }) => {
    // Long enough that "sending" is still shown when checked on a loaded CI machine.
    await hub.open({ sendDelay: 3000 });
    const composer = page.locator("#composer");
    await composer.click();
    await composer.pressSequentially("kiwi line");
    await composer.press("Shift+Enter");
    await composer.pressSequentially("zebra line");
    await expect(composer).toHaveValue("kiwi line\nzebra line");
    await composer.press("Enter");
    await expect(composer).toHaveValue("");
    await expect(composer).toBeFocused();

    const sent = await hub.calls("send");
    expect(sent).toHaveLength(1);
    expect(sent[0]!.args).toEqual({ account: 1, conversation: "broadcast", text: "kiwi line\nzebra line" });

    const mine = page.locator("#messages li.message.outgoing").last();
    await expect(mine.locator(".body")).toHaveText("kiwi line\nzebra line");
    await expect(mine).toHaveAttribute("data-state", "sending");
    await expect(mine.locator(".delivery")).toContainText("Sending");
    await hub.shot("message-sending");
    await expect(mine).toHaveAttribute("data-state", "sent", { timeout: 10_000 });
    await expect(mine.locator(".delivery")).toContainText("Sent");
    // The message is shown once, although the shell both returned it and sent an event.
    await expect(page.locator("#messages li.message .body", { hasText: "zebra line" })).toHaveCount(1);
  });

  test("the Broadcast button sends; blank text is not sent", async ({ hub, page }) => {
    await hub.open();
    await expect(page.locator("#broadcast")).toContainText("Broadcast");
    await page.locator("#composer").fill("   ");
    await page.locator("#broadcast").click();
    expect(await hub.calls("send")).toHaveLength(0);
    await page.locator("#composer").fill("via the button");
    await page.locator("#broadcast").click();
    await expect(page.locator("#messages li.message").last().locator(".body")).toHaveText("via the button");
    await expect(page.locator("#messages li.message").last()).toHaveAttribute("data-state", "sent");
    expect(await hub.calls("send")).toHaveLength(1);
  });

  test("a failed message offers Retry and Discard", async ({ hub, page }) => {
    await hub.open({ sendDelay: 100 });
    await mockSet(page, "failNext", "the hub refused: message too long");
    await page.locator("#composer").fill("doomed");
    await page.locator("#composer").press("Enter");
    const row = page.locator("#messages li.message").last();
    await expect(row).toHaveAttribute("data-state", "failed");
    await expect(row.locator(".delivery")).toContainText("message too long");
    await expect(row.locator("button.retry")).toBeVisible();
    await hub.shot("message-failed");

    await mockSet(page, "hold", true);
    await row.locator("button.retry").click();
    await expect(row).toHaveAttribute("data-state", "sending");
    expect((await hub.calls("retry"))[0]!.args).toMatchObject({ account: 1, conversation: "broadcast" });
    await mock(page, "release");
    await expect(row).toHaveAttribute("data-state", "sent");
    await expect(row.locator("button.retry")).toHaveCount(0);

    // Discard removes a failed message.
    await mockSet(page, "hold", false);
    await mockSet(page, "failNext", "offline");
    await page.locator("#composer").fill("to discard");
    await page.locator("#broadcast").click();
    const second = page.locator("#messages li.message", { hasText: "to discard" });
    await expect(second).toHaveAttribute("data-state", "failed");
    await second.locator("button.discard").click();
    await expect(second).toHaveCount(0);
    expect(await hub.calls("discard")).toHaveLength(1);
  });

  test("markup in messages and names is shown literally, never run", async ({ hub, page }) => {
    await hub.open();
    const evil = `<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> <b>bold</b>`;
    await mock(page, "receive", 1, "broadcast", `<img src=y onerror="window.__pwned=3">`, evil);
    const row = page.locator("#messages li.message").last();
    await expect(row.locator(".body")).toHaveText(evil);
    await expect(row.locator(".sender")).toHaveText(`<img src=y onerror="window.__pwned=3">`);
    await page.locator("#composer").fill(evil);
    await page.locator("#composer").press("Enter");
    await expect(page.locator("#messages li.message").last().locator(".body")).toHaveText(evil);
    // Through search results too.
    await page.keyboard.press("Control+k");
    await page.locator("#search-input").fill("onerror");
    await expect(page.locator("#search-results .result-body").first()).toHaveText(evil);
    await page.keyboard.press("Escape");

    expect(await page.locator("#messages img, #messages script, #messages b, #search-results img").count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    // The announcer got the text, as text.
    await expect(page.locator("#live")).toContainText("<script>");
    expect(await page.locator("#live img").count()).toBe(0);
    await hub.shot("xss-literal");
  });
});

test("the UI's source never parses HTML from strings", async ({}, testInfo) => {
  test.skip(testInfo.project.name !== "desktop", "a source check, once is enough");
  const { readdirSync, readFileSync, statSync } = await import("node:fs");
  const { join } = await import("node:path");
  const root = join(testInfo.project.testDir, "..", "src");
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ts|js)$/.test(name) && /innerHTML|outerHTML\s*=|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment/.test(readFileSync(p, "utf8")))
        offenders.push(p);
    }
  };
  walk(root);
  expect(offenders).toEqual([]);
});
