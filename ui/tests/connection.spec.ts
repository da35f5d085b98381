import { expect, mock, test } from "./fixtures";

test.describe("connection state", () => {
  test("Disconnect / Connect toggle", async ({ hub, page }) => {
    await hub.open({ connectDelay: 500 });
    const toggle = page.locator("#toggle-connection");
    const status = page.locator("#status");
    await expect(status).toHaveAttribute("data-state", "connected");
    await expect(status).toHaveText("Connected · WebSockets");
    await expect(toggle).toHaveText("Disconnect");

    await toggle.click();
    await expect(status).toHaveAttribute("data-state", "disconnected");
    await expect(status).toHaveText("Disconnected");
    await expect(toggle).toHaveText("Connect");
    await expect(page.locator("#conn-banner")).toContainText("offline");
    await expect(page.locator("#composer-hint")).toContainText("outbox");
    expect(await hub.calls("disconnect")).toEqual([{ cmd: "disconnect", args: { account: 1 } }]);
    await hub.shot("disconnected");

    await toggle.click();
    await expect(status).toHaveAttribute("data-state", "connecting");
    await expect(status).toHaveText("Connecting…");
    await expect(toggle).toHaveText("Disconnect");
    await expect(status).toHaveAttribute("data-state", "connected");
    expect(await hub.calls("connect")).toEqual([{ cmd: "connect", args: { account: 1 } }]);
    await expect(page.locator("#conn-banner")).toBeHidden();
  });

  test("reconnecting shows the attempt and a live countdown; the reason when disconnected", async ({ hub, page }) => {
    await hub.open();
    const nextRetryAt = await page.evaluate(() => Date.now() + 5_000);
    await mock(page, "setStatus", 1, { state: "reconnecting", attempt: 3, nextRetryAt, reason: "the connection was reset" });
    const status = page.locator("#status");
    await expect(status).toHaveAttribute("data-state", "reconnecting");
    await expect(status).toContainText("attempt 3 in 5 s");
    await expect(page.locator("#conn-banner")).toContainText("the connection was reset");
    await expect(page.locator("#conn-banner")).toContainText("Attempt 3 in");
    await hub.shot("reconnecting");
    // It counts down by itself.
    await expect(status).toContainText("attempt 3 in 3 s", { timeout: 4_000 });
    await expect(status).toContainText("attempt 3 now", { timeout: 6_000 });
    await expect(page.locator("#toggle-connection")).toHaveText("Disconnect");
    // Sidebar dot follows.
    await hub.sidebar();
    await expect(page.locator("#accounts [data-account='1'] .status-dot")).toHaveAttribute("data-state", "reconnecting");

    await mock(page, "setStatus", 1, { state: "disconnected", reason: "the hub closed the connection: token expired" });
    if (hub.phone) await page.locator("#conversations [data-key='broadcast']").click();
    await expect(status).toHaveText("Disconnected: the hub closed the connection: token expired");
    await expect(page.locator("#conn-banner")).toContainText("token expired");
    await expect(page.locator("#toggle-connection")).toHaveText("Connect");
    // The banner's own Connect button works too.
    await page.locator("#conn-banner-action").click();
    await expect(status).toHaveAttribute("data-state", "connecting");
  });

  test("the slow connection banner comes and goes", async ({ hub, page }) => {
    await hub.open();
    const banner = page.locator("#slow-banner");
    await expect(banner).toBeHidden();
    await mock(page, "setStatus", 1, { state: "connected", transport: "WebSockets", slow: "hubSilent" });
    await expect(banner).toBeVisible();
    await expect(banner).toContainText("Slow connection");
    await expect(banner).toHaveAttribute("role", "status");
    await hub.shot("slow-banner");
    await mock(page, "setStatus", 1, { state: "connected", transport: "WebSockets", slow: "sendsStalled" });
    await expect(banner).toContainText("taking longer");
    await mock(page, "setStatus", 1, { state: "connected", transport: "WebSockets", slow: null });
    await expect(banner).toBeHidden();
    // State changes are announced for screen readers.
    await expect(page.locator("#live")).toContainText("slow");
  });

  test("suspended (phone in the background) and lifecycle reports", async ({ hub, page }) => {
    await hub.open();
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await mock(page, "setStatus", 1, { state: "suspended" });
    await expect(page.locator("#status")).toHaveAttribute("data-state", "suspended");
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await expect.poll(async () => (await hub.calls("lifecycle")).map((c) => c.args)).toEqual([{ foreground: false }, { foreground: true }]);
  });
});
