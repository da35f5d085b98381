import { expect, mock, test } from "./fixtures";

test.describe("classic ASP.NET SignalR hubs (issue 14)", () => {
  test("Advanced sets the protocol family and the classic hub name; a name that is not one is refused before the shell sees it", async ({ hub, page }) => {
    await hub.open();
    // What auto found shows in the header: this hub speaks classic.
    await mock(page, "setStatus", 1, { state: "connected", transport: "LongPolling", family: "classic" });
    if (hub.phone) await hub.conversation("broadcast");
    await expect(page.locator("#status")).toHaveText("Connected · LongPolling · classic");
    await page.locator("#open-account").click();
    await expect(page.locator("#account-details")).toContainText("Auto: Classic ASP.NET SignalR 2.x, hub chatHub");
    await page.locator("#hub-methods summary").click();
    await expect(page.locator("#hub-family")).toHaveValue("auto");
    await expect(page.locator("#hub-name")).toHaveValue("");
    await expect(page.locator("#hub-name")).toHaveAttribute("placeholder", "chatHub");

    // Not a name: said at once, and nothing is sent.
    await page.locator("#hub-family").selectOption("classic");
    await page.locator("#hub-name").fill("room hub");
    await expect(page.locator("#family-error")).toContainText("letters, digits, _ or $");
    await expect(page.locator("#hub-name")).toHaveAttribute("aria-invalid", "true");
    await page.locator("#save-family").click();
    await expect(page.locator("#hub-name")).toBeFocused();
    expect(await hub.calls("set_family")).toHaveLength(0);
    await page.locator("#hub-name").fill("2rooms");
    await expect(page.locator("#family-error")).toContainText("does not start with a digit");

    // A name: saved, and the account reconnects with it.
    await page.locator("#hub-name").fill(" roomHub ");
    await expect(page.locator("#family-error")).toBeHidden();
    await expect(page.locator("#hub-name")).not.toHaveAttribute("aria-invalid", "true");
    await hub.shot("hub-family");
    await page.locator("#save-family").click();
    await expect.poll(async () => (await hub.calls("set_family")).length).toBe(1);
    expect((await hub.calls("set_family"))[0]!.args).toEqual({ account: 1, family: "classic", hubName: "roomHub" });
    await expect(page.locator("#account-details")).toContainText("Classic ASP.NET SignalR 2.x, hub roomHub");
    await expect(page.locator("#hub-name")).toHaveValue("roomHub");

    // ASP.NET Core has no hub name: the field goes, and none is sent.
    await page.locator("#hub-family").selectOption("core");
    await expect(page.locator("#hub-name")).toBeHidden();
    await page.locator("#save-family").click();
    await expect.poll(async () => (await hub.calls("set_family")).length).toBe(2);
    expect((await hub.calls("set_family"))[1]!.args).toEqual({ account: 1, family: "core", hubName: null });
    await expect(page.locator("#account-details")).toContainText("ASP.NET Core SignalR");
    // The dialog still fits a phone: the save button is reachable, nothing overflows sideways.
    const overflow = await page.locator("#account-dialog").evaluate((d) => d.scrollWidth - d.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
  });

  test("the connect screen adds a classic hub with a hub name, and refuses one that is not a name", async ({ hub, page }) => {
    await hub.open({ empty: true });
    await page.locator("#hub-url").fill("http://127.0.0.1:8080/signalr");
    await page.locator("#display-name").fill("alice");
    await page.locator(".advanced summary").click();
    await page.locator("#family").selectOption("classic");
    await page.locator("#connect-hub-name").fill("chat-hub");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("letters, digits, _ or $");
    await expect(page.locator("#connect-hub-name")).toBeFocused();
    await expect(page.locator("#connect-hub-name")).toHaveAttribute("aria-invalid", "true");
    expect(await hub.calls("add_account")).toHaveLength(0);

    await page.locator("#connect-hub-name").fill("ChatHub");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#status")).toHaveText("Connected · WebSockets · classic");
    expect((await hub.calls("add_account"))[0]!.args).toMatchObject({
      input: { url: "http://127.0.0.1:8080/signalr", family: "classic", hubName: "ChatHub" },
    });
  });
});
