import { expect, mock, test } from "./fixtures";

test.describe("any hub (issue 15)", () => {
  test("the inspector shows what the hub sent, and its console shows a result and an error", async ({ hub, page }) => {
    await hub.open();
    await mock(page, "inspect", 1, "Notice", ["psst", 1], false);
    await mock(page, "inspect", 1, "ReceiveMessage", [{ user: "bob", message: "hi" }], true);
    await page.locator("#open-inspector").click();
    const log = page.locator("#inspector-log");
    await expect(log.locator('[data-target="Notice"] .arguments')).toHaveText('["psst",1]');
    await expect(log.locator('[data-target="ReceiveMessage"]')).toContainText("(chat message)");
    // Entries arriving while it is open are appended.
    await mock(page, "inspect", 1, "somethingElse", [{ a: [1] }], false);
    await expect(log.locator('[data-target="somethingElse"] .arguments')).toHaveText('[{"a":[1]}]');

    await page.locator("#console-method").fill("Add");
    await page.locator("#console-args").fill("[2, 3]");
    await page.locator("#console-invoke").click();
    const result = page.locator("#console-result");
    await expect(result).toHaveText("5");
    await expect(result).toHaveAttribute("data-state", "result");
    expect((await hub.calls("invoke_hub"))[0]!.args).toEqual({ account: 1, method: "Add", arguments: [2, 3] });

    await page.locator("#console-method").fill("Fail");
    await page.locator("#console-args").fill("");
    await page.locator("#console-invoke").click();
    await expect(result).toHaveText("nope: Fail always fails");
    await expect(result).toHaveAttribute("data-state", "error");

    await page.locator("#console-args").fill("[oops");
    await page.locator("#console-invoke").click();
    await expect(result).toContainText("The arguments are not JSON");
    await hub.shot("inspector");
  });

  test("Advanced shows the methods auto found and what the hub lacks; a preset edited by hand is custom", async ({ hub, page }) => {
    await hub.open();
    await mock(
      page,
      "hubMethods",
      1,
      { preset: "auto", send: "SendMessage(name,text)", receive: [] },
      [
        { feature: "history", reason: "Unknown hub method 'History'" },
        { feature: "presence", reason: "Unknown hub method 'GetOnline'" },
      ],
    );
    await mock(page, "presence", 1, "bob", false);
    await mock(page, "presence", 1, "carol", false);
    await hub.sidebar();
    await expect(page.locator("#presence-unavailable")).toHaveText(
      "This hub does not say who is online (it answered: Unknown hub method 'GetOnline').",
    );
    if (hub.phone) await hub.conversation("broadcast");
    await page.locator("#open-account").click();
    await expect(page.locator("#unavailable")).toContainText(
      "This hub has no history, presence (it answered: Unknown hub method 'History'; Unknown hub method 'GetOnline')",
    );
    await page.locator("#hub-methods summary").click();
    await expect(page.locator("#send-method")).toHaveValue("SendMessage(name,text)");
    await expect(page.locator("#methods-preset")).toHaveValue("auto");

    await page.locator("#methods-preset").selectOption("coreTutorial");
    await expect(page.locator("#receive-methods")).toHaveValue("ReceiveMessage(0,1)");
    await page.locator("#receive-methods").fill("ReceiveMessage(0.user,0.message), Notice(_,0)");
    await page.locator("#save-methods").click();
    await expect.poll(async () => (await hub.calls("set_methods")).length).toBe(1);
    expect((await hub.calls("set_methods"))[0]!.args).toEqual({
      account: 1,
      methods: { preset: "custom", send: "SendMessage(name,text)", receive: ["ReceiveMessage(0.user,0.message)", "Notice(_,0)"] },
    });
    await expect(page.locator("#methods-preset")).toHaveValue("custom");
    await hub.shot("hub-methods");
  });
});
