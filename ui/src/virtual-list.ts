// A windowed message list: only the rows near the viewport are in the DOM (a bounded number,
// whatever the history's length); the rest is represented by top and bottom padding computed
// from measured (or estimated) row heights. Rows have natural, variable heights.
//
// Scroll position is kept by anchoring: before each render the first visible row and its
// distance from the top are noted from the DOM, and restored after the rows above it change
// (older pages prepended, heights measured). When the reader is at the bottom, the list
// follows new messages.

import type { Message } from "./api";
import type { ConversationLog } from "./store";

/** Pixels of rows kept rendered above and below the viewport. */
const OVERSCAN = 600;
/** Hard cap on rendered rows, whatever their heights. */
export const MAX_ROWS = 120;
/** Padding above the first row and below the last (px); the CSS reads it through variables. */
const EDGE = 12;
/** After this long without scrolling, height corrections are settled into scrollTop. */
const IDLE_MS = 180;
/** Rows closer than this to the loaded start trigger loading an older page. */
const NEAR_TOP_ROWS = 30;

export interface RowRenderer {
  /** Layout variant (e.g. grouped with the previous row, starts a day): part of the height key. */
  variant(m: Message, prev: Message | undefined): number;
  render(m: Message, prev: Message | undefined, variant: number): HTMLLIElement;
  /** A first guess of a row's height before it is measured. */
  estimate(m: Message, variant: number): number;
}

interface Rendered {
  li: HTMLLIElement;
  msg: Message;
  variant: number;
}

export interface Anchor {
  id: string;
  /** Row top minus scrollTop. */
  offset: number;
}

export class VirtualList {
  private log: ConversationLog | null = null;
  private rendered = new Map<string, Rendered>();
  /** offsets[i] = top of row i relative to the first row; offsets[n] = total height. */
  private offsets = new Float64Array(1);
  private offsetsFor = -1;
  private offsetsDirty = true;
  private frame = 0;
  private forced: Anchor | null = null;
  private highlightId: string | null = null;
  /** The reader is at the bottom and the list follows new messages. */
  stick = true;
  private lastStart = 0;
  /** The scrollTop this list last set itself: a scroll event landing there is not the reader's. */
  private expectedTop = -1;
  /** Pixels added to the top padding to absorb height corrections above the viewport. */
  private skew = 0;
  private lastTop = 0;
  /** Settle the skew on the next render (the reader paused). */
  private settleNext = false;
  private idleTimer = 0;

  /** Called when the reader nears the oldest loaded message. */
  onNearTop: () => void = () => {};
  /** Called after a render or scroll whenever the reader sees the newest message. */
  onAtBottom: () => void = () => {};
  /** Called when `stick` changes. */
  onStickChange: (stick: boolean) => void = () => {};

  constructor(
    readonly scroller: HTMLElement,
    readonly list: HTMLUListElement,
    private readonly renderer: RowRenderer,
  ) {
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroller);
  }

  /** Shows another conversation (saving where the reader was in the previous one). */
  setLog(log: ConversationLog | null): void {
    if (this.log === log) return;
    if (this.log) this.log.saved = this.stick ? null : this.currentAnchor();
    this.clear();
    this.log = log;
    this.offsetsDirty = true;
    this.forced = log?.saved ?? null;
    this.setStick(this.forced === null);
    this.renderNow();
  }

  getLog(): ConversationLog | null {
    return this.log;
  }

  /** The data changed: re-render on the next frame. */
  invalidate(): void {
    this.offsetsDirty = true;
    this.schedule();
  }

  /** Re-render now (tests and keyboard actions want the DOM up to date at once). */
  renderNow(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.render();
  }

  scrollToBottom(): void {
    this.forced = null;
    this.setStick(true);
    this.renderNow();
  }

  /** Brings a loaded message into view (a third from the top) and highlights it briefly. */
  scrollToMessage(id: string): void {
    if (!this.log || this.log.indexOf(id) < 0) return;
    this.forced = { id, offset: Math.round(this.scroller.clientHeight / 3) };
    this.setStick(false);
    this.highlightId = id;
    this.renderNow();
    const r = this.rendered.get(id);
    if (r) {
      r.li.classList.add("highlight");
      setTimeout(() => r.li.classList.remove("highlight"), 2000);
    }
    setTimeout(() => {
      if (this.highlightId === id) this.highlightId = null;
    }, 2000);
  }

  /** The rendered row of a message, if it is in the window. */
  rowOf(id: string): HTMLLIElement | null {
    return this.rendered.get(id)?.li ?? null;
  }

  isAtBottom(): boolean {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 4;
  }

  // ---- internals ---------------------------------------------------------------------------

  private clear(): void {
    for (const r of this.rendered.values()) r.li.remove();
    this.rendered.clear();
    this.list.style.setProperty("--pad-top", `${EDGE}px`);
    this.list.style.setProperty("--pad-bottom", `${EDGE}px`);
  }

  private setStick(stick: boolean): void {
    if (this.stick !== stick) {
      this.stick = stick;
      this.onStickChange(stick);
    }
  }

  private schedule(): void {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  private onScroll(): void {
    const top = this.scroller.scrollTop;
    if (Math.abs(top - this.expectedTop) >= 1) {
      // The reader moved: a pending forced anchor no longer applies. Any move upwards lets go
      // of the bottom (a smooth scroll starts with a pixel or two); reaching it holds on again.
      this.expectedTop = -1;
      this.forced = null;
      this.setStick(top >= this.lastTop && this.isAtBottom());
    }
    this.lastTop = top;
    clearTimeout(this.idleTimer);
    this.idleTimer = window.setTimeout(() => {
      if (Math.abs(this.skew) >= 1) {
        this.settleNext = true;
        this.schedule();
      }
    }, IDLE_MS);
    this.schedule();
  }

  private setScrollTop(top: number): void {
    const s = this.scroller;
    const max = Math.max(0, s.scrollHeight - s.clientHeight);
    const t = Math.max(0, Math.min(max, Math.round(top)));
    if (Math.abs(s.scrollTop - t) >= 1) s.scrollTop = t;
    this.expectedTop = s.scrollTop;
  }

  /** The first row at least partly visible, from the DOM as it is now. */
  private currentAnchor(): Anchor | null {
    const top = this.scroller.scrollTop;
    for (const el of this.list.children) {
      const li = el as HTMLLIElement;
      const id = li.dataset.id;
      if (!id) continue;
      if (li.offsetTop + li.offsetHeight > top) return { id, offset: li.offsetTop - top };
    }
    return null;
  }

  private variantAt(items: Message[], i: number): number {
    return this.renderer.variant(items[i]!, i > 0 ? items[i - 1] : undefined);
  }

  private heightAt(items: Message[], i: number): number {
    const m = items[i]!;
    const v = this.variantAt(items, i);
    const known = this.log!.heights.get(m.id);
    if (known && known.variant === v) return known.h;
    return this.renderer.estimate(m, v);
  }

  private ensureOffsets(): void {
    const log = this.log!;
    if (!this.offsetsDirty && this.offsetsFor === log.version) return;
    const items = log.items;
    const n = items.length;
    if (this.offsets.length < n + 1) this.offsets = new Float64Array(Math.max(n + 1, this.offsets.length * 2));
    let acc = 0;
    this.offsets[0] = 0;
    for (let i = 0; i < n; i++) {
      acc += this.heightAt(items, i);
      this.offsets[i + 1] = acc;
    }
    this.offsetsDirty = false;
    this.offsetsFor = log.version;
  }

  /** First i in [0, n) whose bottom is below y. */
  private indexAtY(y: number, n: number): number {
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.offsets[mid + 1]! <= y) lo = mid + 1;
      else hi = mid;
    }
    return Math.min(lo, Math.max(0, n - 1));
  }

  private render(): void {
    const log = this.log;
    if (!log) {
      this.clear();
      return;
    }
    this.renderLog(log);
    if (log.hasMore && log.loaded && this.lastStart < NEAR_TOP_ROWS) this.onNearTop();
    if (this.isAtBottom() || this.stick) this.onAtBottom();
  }

  /**
   * Lays out the rows around the reader's anchor.
   *
   * Rows above the viewport are usually measured for the first time while the reader scrolls up,
   * and their real heights differ from the estimates. Moving scrollTop to compensate would cancel
   * the browser's smooth (keyboard, wheel) scrolling, so the difference is absorbed by `skew`, an
   * offset added to the top padding: rows stay where they are on screen. The skew is settled
   * (set back to 0, with one scrollTop change) when the reader pauses, at the very top, when the
   * padding cannot absorb it, and on jumps.
   */
  private renderLog(log: ConversationLog): void {
    const items = log.items;
    const n = items.length;
    const anchor = this.stick ? null : (this.forced ?? this.currentAnchor());
    const viewH = this.scroller.clientHeight;
    let settle = this.settleNext || this.forced !== null || this.rendered.size === 0;
    this.settleNext = false;

    for (let pass = 0; pass < 4; pass++) {
      this.ensureOffsets();
      let anchorIdx = anchor ? log.indexOf(anchor.id) : -1;
      if (anchor && anchorIdx < 0) anchorIdx = Math.max(0, Math.min(n - 1, this.lastStart));
      const useAnchor = anchor !== null && anchorIdx >= 0 && n > 0;

      // Where the viewport starts (scrollTop) and the skew that keeps the anchor in place.
      const place = (): number => {
        const total = n ? this.offsets[n]! : 0;
        if (!useAnchor) {
          this.skew = 0;
          return Math.max(0, EDGE * 2 + total - viewH);
        }
        if (settle) {
          this.skew = 0;
          return Math.max(0, EDGE + this.offsets[anchorIdx]! - anchor!.offset);
        }
        const top = this.scroller.scrollTop;
        this.skew = top + anchor!.offset - EDGE - this.offsets[anchorIdx]!;
        return top;
      };
      let top = place();

      // The window of rows to render (in row-offset space).
      let start = 0;
      let end = 0;
      if (n > 0) {
        const y = top - EDGE - this.skew;
        start = this.indexAtY(y - OVERSCAN, n);
        end = this.indexAtY(y + viewH + OVERSCAN, n) + 1;
        if (end - start > MAX_ROWS) {
          const mid = this.indexAtY(y + viewH / 2, n);
          start = Math.max(0, Math.min(mid - MAX_ROWS / 2, n - MAX_ROWS));
          end = Math.min(n, start + MAX_ROWS);
        }
      }
      const cannotAbsorb = () => {
        if (n === 0) return false;
        const padTop = EDGE + this.skew + this.offsets[start]!;
        return start === 0 ? Math.abs(this.skew) >= 1 : padTop < EDGE;
      };
      if (!settle && cannotAbsorb()) {
        settle = true;
        top = place();
        pass--;
        continue;
      }
      this.lastStart = start;
      this.reconcile(items, start, end);
      this.setPads(n, start, end);

      // Measure what is rendered; remember heights that differ from what was assumed.
      let changed = false;
      for (let i = start; i < end; i++) {
        const r = this.rendered.get(items[i]!.id);
        if (!r) continue;
        const h = r.li.getBoundingClientRect().height;
        const known = log.heights.get(r.msg.id);
        if (!known || known.variant !== r.variant || Math.abs(known.h - h) > 0.5) {
          log.heights.set(r.msg.id, { h, variant: r.variant });
          changed = true;
        }
      }
      if (changed) {
        this.offsetsDirty = true;
        this.ensureOffsets();
        top = place();
        if (!settle && cannotAbsorb()) {
          settle = true;
          top = place();
        }
        this.setPads(n, start, end);
      }
      if (settle || !useAnchor) this.setScrollTop(top);
      // Done when the rendered window covers the viewport as it now stands.
      const y = this.scroller.scrollTop - EDGE - this.skew;
      const covered = n === 0 || ((start === 0 || this.offsets[start]! <= y) && (end === n || this.offsets[end]! >= y + viewH));
      if (covered && (!changed || pass > 0)) break;
    }
    if (anchor && this.forced) this.forced = anchor;
  }

  private setPads(n: number, start: number, end: number): void {
    const total = n ? this.offsets[n]! : 0;
    const padTop = EDGE + (n ? this.skew + this.offsets[start]! : 0);
    const padBottom = EDGE + (n ? total - this.offsets[end]! : 0);
    this.list.style.setProperty("--pad-top", `${padTop}px`);
    this.list.style.setProperty("--pad-bottom", `${padBottom}px`);
  }

  private reconcile(items: Message[], start: number, end: number): void {
    const wanted = new Set<string>();
    for (let i = start; i < end; i++) wanted.add(items[i]!.id);
    const active = document.activeElement;
    let refocus = false;
    for (const [id, r] of this.rendered) {
      if (!wanted.has(id)) {
        if (active && r.li.contains(active)) refocus = true;
        r.li.remove();
        this.rendered.delete(id);
      }
    }
    let cursor: ChildNode | null = this.list.firstChild;
    for (let i = start; i < end; i++) {
      const m = items[i]!;
      const prev = i > 0 ? items[i - 1] : undefined;
      const variant = this.renderer.variant(m, prev);
      let r = this.rendered.get(m.id);
      if (r && (r.msg !== m || r.variant !== variant)) {
        const li = this.renderer.render(m, prev, variant);
        if (active && r.li.contains(active)) refocus = true;
        r.li.replaceWith(li);
        if (cursor === r.li) cursor = li;
        r = { li, msg: m, variant };
        this.rendered.set(m.id, r);
      } else if (!r) {
        r = { li: this.renderer.render(m, prev, variant), msg: m, variant };
        this.rendered.set(m.id, r);
      }
      if (r.li !== cursor) this.list.insertBefore(r.li, cursor);
      else cursor = cursor.nextSibling;
      if (this.highlightId === m.id) r.li.classList.add("highlight");
    }
    if (refocus) this.scroller.focus({ preventScroll: true });
  }
}
