import { expect, mock, test } from "./fixtures";

test.describe("accessibility and layout", () => {
  test("roles, labels and the live region", async ({ hub, page }) => {
    await hub.open();
    await expect(page.locator("#messages")).toHaveAttribute("role", "list");
    await expect(page.locator("#messages")).toHaveAttribute("aria-label", "Messages in Everyone");
    const roles = await page.locator("#messages > li").evaluateAll((lis) => lis.map((li) => li.getAttribute("role")));
    expect(roles.length).toBeGreaterThan(0);
    expect(new Set(roles)).toEqual(new Set(["listitem"]));
    await expect(page.locator("#live")).toHaveAttribute("aria-live", "polite");

    // Every control has a name: visible text, aria-label or a <label>.
    const unnamed = await page.evaluate(() => {
      const out: string[] = [];
      for (const el of document.querySelectorAll<HTMLElement>("button, input, textarea, select")) {
        const named =
          (el.getAttribute("aria-label") ?? "").trim() ||
          (el.textContent ?? "").trim() ||
          (el.id && document.querySelector(`label[for="${el.id}"]`)?.textContent?.trim()) ||
          el.getAttribute("aria-labelledby");
        if (!named) out.push(el.outerHTML.slice(0, 80));
      }
      return out;
    });
    expect(unnamed).toEqual([]);

    // New incoming messages are announced politely; own messages are not.
    await mock(page, "receive", 1, "broadcast", "carol", "can anyone hear me?");
    await expect(page.locator("#live")).toContainText("carol, in Everyone: can anyone hear me?");
    await mock(page, "receive", 1, "dm:bob", "bob", "private hello");
    await expect(page.locator("#live")).toContainText("bob, direct message: private hello");
    await page.locator("#composer").fill("my own words");
    await page.locator("#composer").press("Enter");
    await expect(page.locator("#messages li.message").last()).toHaveAttribute("data-state", "sent");
    await expect(page.locator("#live")).not.toContainText("my own words");
    // No inline style attributes in the markup (the CSP forbids them).
    expect(await page.locator("[style]:not(#messages):not(#composer)").count()).toBe(0);
  });

  test("keyboard only: search, conversations, help, composer", async ({ hub, page }) => {
    test.skip(hub.phone, "hardware keyboards are a desktop matter");
    await hub.open({ secondAccount: true });
    // Tab order starts with the skip link, then the sidebar in reading order.
    await page.keyboard.press("Tab");
    await expect(page.locator(".skip-link")).toBeFocused();
    await page.keyboard.press("Tab");
    await expect(page.locator("#open-help")).toBeFocused();
    await page.keyboard.press("Tab");
    await expect(page.locator("#add-account")).toBeFocused();
    await page.keyboard.press("Tab");
    await expect(page.locator("#accounts [data-account='1']")).toBeFocused();
    // The focus ring is visible.
    const outline = await page.locator("#accounts [data-account='1']").evaluate((el) => getComputedStyle(el).outlineStyle);
    expect(outline).toBe("solid");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await expect(page.locator("#conversations [data-key='broadcast']")).toBeFocused();
    // Enter on a conversation opens it.
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await expect(page.locator("#chat-title")).toHaveText("# general");
    await expect(page.locator("#conversations [data-key='room:general']")).toBeFocused();

    // Alt+Down / Alt+Up step through conversations; focus follows in the list.
    await page.keyboard.press("Alt+ArrowDown");
    await expect(page.locator("#chat-title")).toHaveText("@ bob");
    await expect(page.locator("#conversations [data-key='dm:bob']")).toBeFocused();
    await page.keyboard.press("Alt+ArrowUp");
    await page.keyboard.press("Alt+ArrowUp");
    await expect(page.locator("#chat-title")).toHaveText("Everyone");
    // Alt+Shift+Down: next hub.
    await page.keyboard.press("Alt+Shift+ArrowDown");
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com");
    await page.keyboard.press("Alt+Shift+ArrowUp");
    await expect(page.locator("#chat-hub")).toContainText("Local hub");

    // Skip link straight to the composer, write and send with the keyboard.
    await page.locator(".skip-link").focus();
    await page.keyboard.press("Enter");
    await expect(page.locator("#composer")).toBeFocused();
    await page.keyboard.type("typed without a mouse");
    await page.keyboard.press("Enter");
    await expect(page.locator("#messages li.message").last().locator(".body")).toHaveText("typed without a mouse");

    // Ctrl+K search, arrows into the results, Enter jumps, focus lands on the list.
    await page.keyboard.press("Control+k");
    await expect(page.locator("#search-input")).toBeFocused();
    await page.keyboard.type("History message 12");
    await expect(page.locator("#search-results .result-button").first()).toContainText("History message 12");
    await page.keyboard.press("ArrowDown");
    await expect(page.locator("#search-results .result-button").first()).toBeFocused();
    await page.keyboard.press("Enter");
    await expect(page.locator("#scroller")).toBeFocused();
    await expect(page.locator("#messages li.message", { hasText: "History message 12" }).first()).toBeInViewport();
    // Escape goes back to the composer.
    await page.keyboard.press("Escape");
    await expect(page.locator("#composer")).toBeFocused();

    // ? opens help (not while typing); Escape closes it.
    await page.keyboard.type("?");
    await expect(page.locator("#help-dialog")).toBeHidden();
    await page.locator("#composer").fill("");
    await page.locator("#scroller").focus();
    await page.keyboard.press("Shift+?");
    await expect(page.locator("#help-dialog")).toBeVisible();
    await expect(page.locator("#help-dialog")).toContainText("Ctrl");
    await hub.shot("help");
    await page.keyboard.press("Escape");
    await expect(page.locator("#help-dialog")).toBeHidden();
    await page.keyboard.press("Control+/");
    await expect(page.locator("#help-dialog")).toBeVisible();
    await page.keyboard.press("Escape");

    // Failed message: Retry reachable by Tab from the list.
    await mock(page, "emit", { type: "notice", account: null, level: "warning", text: "Disk almost full" });
    await expect(page.locator("#notices")).toContainText("Disk almost full");
  });

  test("phone layout: drawer navigation, 44 px targets, no horizontal overflow", async ({ hub, page }) => {
    await hub.open({ secondAccount: true });
    const measure = () =>
      page.evaluate(() => {
        const small: string[] = [];
        for (const el of document.querySelectorAll<HTMLElement>("button, summary, input, select, textarea")) {
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.height === 0) continue; // not shown
          const style = getComputedStyle(el);
          if (style.visibility === "hidden") continue;
          if (el.closest(".sr-only")) continue;
          if (r.height < 44 || (el.tagName === "BUTTON" && r.width < 44)) small.push(`${el.id || el.className || el.tagName} ${Math.round(r.width)}x${Math.round(r.height)}`);
        }
        return {
          small,
          overflow: document.documentElement.scrollWidth > window.innerWidth || document.body.scrollWidth > window.innerWidth,
        };
      });

    if (!hub.phone) {
      // Desktop: both panes side by side, no back button.
      await expect(page.locator("#sidebar")).toBeVisible();
      await expect(page.locator("#chat")).toBeVisible();
      await expect(page.locator("#back")).toBeHidden();
      expect((await measure()).overflow).toBe(false);
      return;
    }
    // The chat pane is shown; the sidebar is one "back" away.
    await expect(page.locator("#chat")).toBeVisible();
    await expect(page.locator("#sidebar")).toBeHidden();
    let m = await measure();
    expect(m.small).toEqual([]);
    expect(m.overflow).toBe(false);
    await hub.shot("phone-chat");

    // A long unbroken message must not widen the page.
    await mock(page, "receive", 1, "broadcast", "bob", "x".repeat(400) + " https://example.com/" + "a".repeat(200));
    await mock(page, "setStatus", 1, { state: "reconnecting", attempt: 2, nextRetryAt: Date.now() + 9000, reason: "network is unreachable", slow: "hubSilent" });
    await expect(page.locator("#slow-banner")).toBeVisible();
    m = await measure();
    expect(m.overflow).toBe(false);
    expect(m.small).toEqual([]);
    await hub.shot("phone-reconnecting");

    await page.locator("#back").click();
    await expect(page.locator("#sidebar")).toBeVisible();
    await expect(page.locator("#chat")).toBeHidden();
    m = await measure();
    expect(m.small).toEqual([]);
    expect(m.overflow).toBe(false);
    await hub.shot("phone-sidebar");

    await page.locator("#conversations [data-key='room:general']").click();
    await expect(page.locator("#chat")).toBeVisible();
    await expect(page.locator("#chat-title")).toHaveText("# general");
    m = await measure();
    expect(m.small).toEqual([]);

    // Dialogs too.
    await page.locator("#open-search").click();
    await expect(page.locator("#search-input")).toBeFocused();
    m = await measure();
    expect(m.small).toEqual([]);
    expect(m.overflow).toBe(false);
    await page.keyboard.press("Escape");
    await page.locator("#open-account").click();
    await expect(page.locator("#account-dialog")).toBeVisible();
    m = await measure();
    expect(m.small).toEqual([]);
    await hub.shot("phone-account-settings");
  });

  test("dark colour scheme follows the OS", async ({ hub, page }) => {
    await page.emulateMedia({ colorScheme: "dark" });
    await hub.open();
    const bg = await page.locator("#chat").evaluate((el) => getComputedStyle(el).backgroundColor);
    expect(bg).toBe("rgb(23, 26, 32)");
    await mock(page, "setStatus", 1, { state: "connected", transport: "WebSockets", slow: "sendsStalled" });
    await hub.shot("dark");
    await page.emulateMedia({ colorScheme: "light" });
    const light = await page.locator("#chat").evaluate((el) => getComputedStyle(el).backgroundColor);
    expect(light).toBe("rgb(255, 255, 255)");
  });

  test("hub settings: token and removal", async ({ hub, page }) => {
    await hub.open({ secondAccount: true, keychain: false });
    await page.locator("#open-account").click();
    await expect(page.locator("#account-details")).toContainText("Built-in local hub");
    await expect(page.locator("#account-token-hint")).toContainText("not available");
    await page.locator("#account-token").fill("new-token");
    await page.locator("#save-token").click();
    expect((await hub.calls("set_token"))[0]!.args).toEqual({ account: 1, token: "new-token" });
    await expect(page.locator("#forget-token")).toBeVisible();
    await page.locator("#remove-account").click();
    await expect(page.locator("#remove-account")).toContainText("Press again");
    await page.locator("#remove-account").click();
    await expect(page.locator("#account-dialog")).toBeHidden();
    expect((await hub.calls("remove_account"))[0]!.args).toEqual({ account: 1 });
    await expect(page.locator("#chat-hub")).toContainText("chat.example.com");
    await page.locator("#open-account").click();
    await page.locator("#remove-account").click();
    await page.locator("#remove-account").click();
    await expect(page.locator("#connect-form")).toBeVisible();
  });
});
