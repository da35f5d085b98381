import { expect, mock, test } from "./fixtures";

test.describe("connect screen", () => {
  test("first run shows the connect form and adds the local hub", async ({ hub, page }) => {
    await hub.open({ empty: true, connectDelay: 400 });
    await expect(page.locator("#connect-form")).toBeVisible();
    await expect(page.locator("#sidebar")).toBeHidden();
    await expect(page.locator("#connect-cancel")).toBeHidden();
    await expect(page.locator("#token")).toHaveAttribute("type", "password");
    // Transport and protocol sit behind the Advanced disclosure.
    await expect(page.locator("#transport")).toBeHidden();
    await expect(page.locator("#display-name")).toBeFocused();
    await hub.shot("connect-first-run");

    // A display name is required.
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("display name");
    // Marked invalid as screen readers and the styles read it ("true"; an empty value reads as
    // not invalid).
    await expect(page.locator("#display-name")).toHaveAttribute("aria-invalid", "true");
    await expect(page.locator("#hub-url")).not.toHaveAttribute("aria-invalid");
    expect(await hub.calls("add_account")).toHaveLength(0);

    await page.locator("#display-name").fill("alice");
    await page.locator(".advanced summary").click();
    await expect(page.locator("#transport")).toBeVisible();
    await page.locator("#protocol").selectOption("messagepack");
    await hub.shot("connect-advanced");
    await page.locator("#connect-submit").click();

    await expect(page.locator("#chat")).toBeVisible();
    await expect(page.locator("#status")).toHaveAttribute("data-state", "connecting");
    await expect(page.locator("#status")).toHaveAttribute("data-state", "connected");
    await expect(page.locator("#status")).toContainText("Connected");
    const calls = await hub.calls("add_account");
    expect(calls).toHaveLength(1);
    expect(calls[0]!.args).toEqual({
      input: { url: null, displayName: "alice", token: null, protocol: "messagepack", transport: "auto", family: "auto", hubName: null, caPem: null },
    });
    // The order the contract asks for at start.
    const order = await page.evaluate(() =>
      (window as unknown as { __mock: { calls: { cmd: string }[] } }).__mock.calls.slice(0, 3).map((c) => c.cmd),
    );
    expect(order[0]).toBe("subscribe");
    expect(order.slice(1).sort()).toEqual(["app_info", "list_accounts"]);
    await expect(page.locator("#empty-state")).toBeVisible();
  });

  test("a bad address is refused before the shell sees it; the shell's error is shown", async ({ hub, page }) => {
    await hub.open({ empty: true });
    await page.locator("#hub-url").fill("not a url");
    await page.locator("#display-name").fill("alice");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("full address");
    await expect(page.locator("#hub-url")).toBeFocused();
    await expect(page.locator("#hub-url")).toHaveAttribute("aria-invalid", "true");
    await expect(page.locator("#display-name")).not.toHaveAttribute("aria-invalid");
    expect(await hub.calls("add_account")).toHaveLength(0);

    await page.locator("#hub-url").fill("https://refuse.example.com/hub");
    await page.locator("#token").fill("s3cret");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("refused the negotiation");
    await expect(page.locator("#hub-url")).not.toHaveAttribute("aria-invalid");
    const calls = await hub.calls("add_account");
    expect(calls[0]!.args).toMatchObject({ input: { url: "https://refuse.example.com/hub", token: "s3cret", transport: "auto", protocol: "json" } });
    await expect(page.locator("#connect-submit")).toBeEnabled();
  });

  test("#add-account opens the connect screen and adds a second hub side by side", async ({ hub, page }) => {
    await hub.open();
    await hub.sidebar();
    await page.locator("#add-account").click();
    await expect(page.locator("#connect-form")).toBeVisible();
    await expect(page.locator("#connect-cancel")).toBeVisible();
    await page.locator("#connect-cancel").click();
    await expect(page.locator("#connect-form")).toBeHidden();

    await hub.sidebar();
    await page.locator("#add-account").click();
    await page.locator("#hub-url").fill("https://chat.example.com/hub");
    await page.locator("#display-name").fill("zoe");
    await page.locator(".advanced summary").click();
    await page.locator("#transport").selectOption("longPolling");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#chat")).toBeVisible();
    await expect(page.locator("#chat-title")).toHaveText("Everyone");
    await hub.sidebar();
    const accounts = page.locator("#accounts [data-account]");
    await expect(accounts).toHaveCount(2);
    await expect(accounts.nth(1)).toContainText("chat.example.com/hub");
    await expect(accounts.nth(1)).toHaveClass(/current/);
    await expect(accounts.nth(1).locator(".status-dot")).toHaveAttribute("data-state", "connected");
    await expect(accounts.nth(0).locator(".status-dot")).toHaveAttribute("data-state", "connected");
    expect((await hub.calls("add_account"))[0]!.args).toMatchObject({ input: { transport: "longPolling", displayName: "zoe" } });
    // Back to the first hub.
    await accounts.nth(0).click();
    await hub.sidebar();
    await expect(page.locator("#accounts [data-account]").nth(0)).toHaveClass(/current/);
    await mock(page, "setStatus", 2, { state: "disconnected", reason: "closed by the hub" });
    await expect(page.locator("#accounts [data-account]").nth(1).locator(".status-dot")).toHaveAttribute("data-state", "disconnected");
    await hub.shot("two-hubs");
  });
});
