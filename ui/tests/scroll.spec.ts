import { expect, mock, test } from "./fixtures";
import type { Page } from "@playwright/test";

const N = 100_000;

async function rowStats(page: Page) {
  return page.evaluate(() => {
    const rows = Array.from(document.querySelectorAll<HTMLElement>("#messages li.message"));
    const seqs = rows.map((r) => Number(r.dataset.seq));
    return { count: rows.length, first: Math.min(...seqs), last: Math.max(...seqs) };
  });
}

test.describe("100,000 messages of history", () => {
  test.describe.configure({ timeout: 60_000 });

  test("the DOM stays bounded and scrolling up pages in older messages", async ({ hub, page }) => {
    await hub.open({ history: N });
    const scroller = page.locator("#scroller");
    await expect(page.locator("#messages li.message").last()).toContainText(`History message ${N}`);
    await expect(page.locator("#messages li.message").last()).toBeInViewport();
    let stats = await rowStats(page);
    expect(stats.count).toBeLessThan(200);
    expect(stats.last).toBe(N);
    // Only one page was asked for so far (plus at most one more older one).
    const first = await hub.calls("history");
    expect(first[0]!.args).toEqual({ account: 1, conversation: "broadcast", before: null, limit: 100 });
    await hub.shot("history-bottom");

    // Scroll to the top repeatedly: older pages come in, the DOM stays small.
    let oldest = stats.first;
    for (let i = 0; i < 30 && (await hub.calls("history")).length < 8; i++) {
      await scroller.evaluate((el) => (el.scrollTop = 0));
      await expect.poll(async () => (await rowStats(page)).first, { timeout: 5_000 }).toBeLessThan(oldest);
      stats = await rowStats(page);
      expect(stats.count).toBeLessThan(200);
      oldest = stats.first;
    }
    const pages = await hub.calls("history");
    expect(pages.length).toBeGreaterThanOrEqual(8);
    // Each page asks for what is older than the oldest loaded message.
    for (const call of pages.slice(1)) expect(call.args.before).not.toBeNull();
    expect(oldest).toBeLessThan(N - 600);

    // Scrolling keeps the reader's place: what was at the top stays in view after a page lands.
    await scroller.evaluate((el) => (el.scrollTop = 0));
    await page.waitForTimeout(300);
    const topRow = await page.evaluate(() => {
      const scroller = document.getElementById("scroller")!;
      const box = scroller.getBoundingClientRect();
      const rows = Array.from(document.querySelectorAll<HTMLElement>("#messages li.message"));
      const visible = rows.find((r) => r.getBoundingClientRect().bottom > box.top + 5)!;
      return visible.dataset.id!;
    });
    await page.waitForTimeout(500);
    await expect(page.locator(`#messages li.message[data-id="${topRow}"]`)).toBeInViewport();

    // A new message while scrolled up does not yank the view; "Jump to the newest" appears.
    await mock(page, "receive", 1, "broadcast", "bob", "fresh news");
    await expect(page.locator("#jump-latest")).toBeVisible();
    await expect(page.locator(`#messages li.message[data-id="${topRow}"]`)).toBeInViewport();
    expect((await rowStats(page)).count).toBeLessThan(200);
    await hub.shot("history-scrolled-up");
    await page.locator("#jump-latest").click();
    await expect(page.locator("#messages li.message").last().locator(".body")).toHaveText("fresh news");
    await expect(page.locator("#messages li.message").last()).toBeInViewport();
    await expect(page.locator("#jump-latest")).toBeHidden();
    expect((await rowStats(page)).count).toBeLessThan(200);
  });

  test("wheel and keyboard scrolling through thousands of rows stays bounded", async ({ hub, page }) => {
    await hub.open({ history: N });
    const scroller = page.locator("#scroller");
    await scroller.focus();
    // Page Up through the loaded history; pages load as needed.
    for (let i = 0; i < 40; i++) await page.keyboard.press("PageUp");
    await expect.poll(async () => (await hub.calls("history")).length).toBeGreaterThan(1);
    const stats = await rowStats(page);
    expect(stats.count).toBeLessThan(200);
    expect(stats.last).toBeLessThan(N);
    // Rows are contiguous (no gaps in what is rendered) and in order.
    const ordered = await page.evaluate(() => {
      const seqs = Array.from(document.querySelectorAll<HTMLElement>("#messages li.message")).map((r) => Number(r.dataset.seq));
      return seqs.every((s, i) => i === 0 || s === seqs[i - 1]! + 1);
    });
    expect(ordered).toBe(true);
    // Something is always visible: the viewport is covered by rendered rows.
    const box = (await scroller.boundingBox())!;
    const before = (await rowStats(page)).first;
    for (let i = 0; i < 10; i++) {
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.wheel(0, -3000);
      await page.waitForTimeout(50);
    }
    const covered = await page.evaluate(() => {
      const box = document.getElementById("scroller")!.getBoundingClientRect();
      const mid = (box.top + box.bottom) / 2;
      return Array.from(document.querySelectorAll("#messages li.message")).some((r) => {
        const b = r.getBoundingClientRect();
        return b.top <= mid && b.bottom >= mid;
      });
    });
    expect(covered).toBe(true);
    expect((await rowStats(page)).first).toBeLessThan(before);
    expect((await rowStats(page)).count).toBeLessThan(200);
    // The wheel's smooth scrolling may still be moving up on a loaded machine, and a reader's
    // own scroll rightly lets go of the bottom: jump once it has come to rest.
    await expect
      .poll(async () => {
        const before = await scroller.evaluate((el) => el.scrollTop);
        await page.waitForTimeout(200);
        return before === (await scroller.evaluate((el) => el.scrollTop));
      })
      .toBe(true);
    await page.keyboard.press("Alt+End");
    await expect(page.locator("#messages li.message").last()).toContainText(`History message ${N}`);
    await expect(page.locator("#messages li.message").last()).toBeInViewport();
  });

  test("jumping to a search result near the start takes a few history calls", async ({ hub, page }) => {
    await hub.open({ history: N });
    await expect(page.locator("#messages li.message").last()).toContainText(`History message ${N}`);
    const before = (await hub.calls("history")).length;
    await page.keyboard.press("Control+k");
    // The 13th of 100,000 (its text is unlike any other's).
    await page.locator("#search-input").fill("History message 13 —");
    const result = page.locator("#search-results .result-button");
    await expect(result).toHaveCount(1);
    await result.click();
    const target = page.locator("#messages li.message.highlight");
    await expect(target).toContainText("History message 13 —");
    await expect(target).toBeInViewport();
    await hub.shot("jump-far-back");
    // 100,000 messages back in pages of up to 5,000: about 20 calls, not hundreds.
    const calls = (await hub.calls("history")).length - before;
    expect(calls).toBeLessThanOrEqual(25);
    expect(await page.locator("#messages li.message").count()).toBeLessThan(200);
  });
});
