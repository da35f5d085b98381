// Shared test setup: the mocked shell, error and CSP-violation checks, screenshots, and helpers
// that work at both the desktop and the phone viewport.
import { test as base, expect, type Page, type TestInfo } from "@playwright/test";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const MOCK = join(here, "mock-backend.js");
const SHOTS = join(here, "..", "test-results");

export interface MockConfig {
  empty?: boolean;
  history?: number;
  secondAccount?: boolean;
  sendDelay?: number;
  connectDelay?: number;
  keychain?: boolean;
  onlineDelay?: number;
  joinWhileOnline?: string;
}

export interface Hub {
  page: Page;
  phone: boolean;
  /** Loads the UI against a mocked shell. */
  open(config?: MockConfig): Promise<void>;
  /** Makes the sidebar visible (on phones: back from the chat pane). */
  sidebar(): Promise<void>;
  /** Opens a conversation by its key from the sidebar. */
  conversation(key: string): Promise<void>;
  /** Saves a screenshot as ui/test-results/<project>-<name>.png. */
  shot(name: string): Promise<void>;
  /** Commands the UI invoked, with their arguments. */
  calls(cmd: string): Promise<{ cmd: string; args: Record<string, unknown> }[]>;
}

export const test = base.extend<{ hub: Hub }>({
  hub: async ({ page }, use, testInfo: TestInfo) => {
    const phone = testInfo.project.name === "phone";
    const problems: string[] = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
    });
    await page.addInitScript(() => {
      (window as unknown as { __csp: string[] }).__csp = [];
      document.addEventListener("securitypolicyviolation", (e) => {
        (window as unknown as { __csp: string[] }).__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
      });
    });

    const hub: Hub = {
      page,
      phone,
      async open(config = {}) {
        await page.addInitScript((cfg) => {
          (window as unknown as { __HUBBUB_MOCK_CONFIG__: unknown }).__HUBBUB_MOCK_CONFIG__ = cfg;
        }, config);
        await page.addInitScript({ path: MOCK });
        await page.goto("/index.html");
        await expect(page.locator("#app")).not.toHaveAttribute("data-screen", "loading");
        if (!config.empty) {
          await expect(page.locator("#messages li.message").first()).toBeVisible();
        }
      },
      async sidebar() {
        if (phone && (await page.locator("#app").getAttribute("data-pane")) === "chat") {
          await page.locator("#back").click();
        }
        await expect(page.locator("#sidebar")).toBeVisible();
      },
      async conversation(key: string) {
        await hub.sidebar();
        await page.locator(`#conversations [data-key="${key}"]`).click();
        await expect(page.locator("#chat")).toBeVisible();
        await expect(page.locator(`#conversations [data-key="${key}"]`)).toHaveAttribute("aria-current", "page");
      },
      async shot(name: string) {
        mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: join(SHOTS, `${testInfo.project.name}-${name}.png`) });
      },
      async calls(cmd: string) {
        return page.evaluate((c) => (window as unknown as { __mock: { callsOf(c: string): never[] } }).__mock.callsOf(c), cmd);
      },
    };
    await use(hub);

    const csp = await page.evaluate(() => (window as unknown as { __csp?: string[] }).__csp ?? []).catch(() => []);
    for (const v of csp) problems.push(`CSP violation: ${v}`);
    expect(problems, "no page errors, console errors or CSP violations").toEqual([]);
  },
});

export { expect };

/** Runs a function against the mock inside the page. */
export async function mock<T>(page: Page, fn: string, ...args: unknown[]): Promise<T> {
  return page.evaluate(
    ([f, a]) => {
      const m = (window as unknown as { __mock: Record<string, (...x: unknown[]) => unknown> }).__mock;
      const out = m[f as string]!(...(a as unknown[]));
      return out === undefined ? null : JSON.parse(JSON.stringify(out));
    },
    [fn, args] as const,
  ) as Promise<T>;
}

/** Sets a property of the mock controller (failNext, hold). */
export async function mockSet(page: Page, key: string, value: unknown): Promise<void> {
  await page.evaluate(
    ([k, v]) => {
      (window as unknown as { __mock: Record<string, unknown> }).__mock[k as string] = v;
    },
    [key, value] as const,
  );
}
