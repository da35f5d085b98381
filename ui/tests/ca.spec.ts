import { expect, test } from "./fixtures";

/** A CA certificate as a user pastes it (the mock checks its shape; the core parses it). */
const CA = `-----BEGIN CERTIFICATE-----
MIIBkDCCATWgAwIBAgIUJV72rY2Fueu4DjB07cMFUMjRVDQwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRSHViYnViIGZpeHR1cmUgQ0EwIBcNMjYxMTMwMTk0NDA5WhgP
-----END CERTIFICATE-----`;
/** PEM in shape whose certificate does not parse: only the core can tell. */
const UNPARSABLE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";

test.describe("an account's CA certificate (issue 16)", () => {
  test("Advanced saves a CA for the hub; text that is not PEM is refused at once, a certificate the core refuses is said, and nothing typed is lost", async ({ hub, page }) => {
    await hub.open();
    if (hub.phone) await hub.conversation("broadcast");
    await page.locator("#open-account").click();
    await expect(page.locator("#account-details")).toContainText("The system's only");
    await page.locator("#hub-methods summary").click();
    await expect(page.locator("#hub-ca")).toHaveValue("");

    // Not PEM: said at once, nothing sent, the text stays.
    await page.locator("#hub-ca").fill("MIIBkDCCATWgAwIBAgIU");
    await page.locator("#save-ca").click();
    await expect(page.locator("#ca-error")).toContainText("PEM form");
    await expect(page.locator("#hub-ca")).toHaveAttribute("aria-invalid", "true");
    await expect(page.locator("#hub-ca")).toBeFocused();
    await expect(page.locator("#hub-ca")).toHaveValue("MIIBkDCCATWgAwIBAgIU");
    expect(await hub.calls("set_ca")).toHaveLength(0);

    // PEM in shape that the core refuses: its sentence, the text kept, the setting unchanged.
    await page.locator("#hub-ca").fill(UNPARSABLE);
    await expect(page.locator("#ca-error")).toBeHidden();
    await page.locator("#save-ca").click();
    await expect(page.locator("#ca-error")).toContainText("cannot be used");
    await expect(page.locator("#hub-ca")).toHaveValue(UNPARSABLE);
    await expect(page.locator("#account-details")).toContainText("The system's only");

    // A certificate: saved, shown, and the account reconnects with it.
    await page.locator("#hub-ca").fill(`\n${CA}\n`);
    await hub.shot("hub-ca");
    await page.locator("#save-ca").click();
    await expect.poll(async () => (await hub.calls("set_ca")).length).toBe(2);
    expect((await hub.calls("set_ca"))[1]!.args).toEqual({ account: 1, caPem: CA });
    await expect(page.locator("#account-details")).toContainText("1 certificate, besides the system's");
    await expect(page.locator("#hub-ca")).toHaveValue(CA);
    await expect(page.locator("#ca-error")).toBeHidden();

    // Emptied: the system's CAs only again (sent as null).
    await page.locator("#hub-ca").fill("  ");
    await page.locator("#save-ca").click();
    await expect.poll(async () => (await hub.calls("set_ca")).length).toBe(3);
    expect((await hub.calls("set_ca"))[2]!.args).toEqual({ account: 1, caPem: null });
    await expect(page.locator("#account-details")).toContainText("The system's only");
    // The dialog still fits a phone.
    const overflow = await page.locator("#account-dialog").evaluate((d) => d.scrollWidth - d.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
  });

  test("the connect screen adds a hub with its CA, and refuses text that is not PEM before the shell sees it", async ({ hub, page }) => {
    await hub.open({ empty: true });
    await page.locator("#hub-url").fill("https://chat.internal.example/hub");
    await page.locator("#display-name").fill("alice");
    await page.locator(".advanced summary").click();
    await page.locator("#connect-ca").fill("not a certificate");
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("PEM form");
    await expect(page.locator("#connect-ca")).toBeFocused();
    await expect(page.locator("#connect-ca")).toHaveAttribute("aria-invalid", "true");
    expect(await hub.calls("add_account")).toHaveLength(0);

    // One the core refuses: said, and every field kept for another try.
    await page.locator("#connect-ca").fill(UNPARSABLE);
    await page.locator("#connect-submit").click();
    await expect(page.locator("#connect-error")).toContainText("cannot be used");
    await expect(page.locator("#hub-url")).toHaveValue("https://chat.internal.example/hub");
    await expect(page.locator("#display-name")).toHaveValue("alice");
    await expect(page.locator("#connect-ca")).toHaveValue(UNPARSABLE);

    await page.locator("#connect-ca").fill(CA);
    await page.locator("#connect-submit").click();
    await expect(page.locator("#status")).toHaveText("Connected · WebSockets");
    expect((await hub.calls("add_account"))[1]!.args).toMatchObject({
      input: { url: "https://chat.internal.example/hub", caPem: CA },
    });
  });
});
