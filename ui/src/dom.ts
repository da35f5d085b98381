// Small DOM helpers. Data only ever reaches the page as text (textContent or attribute values):
// nothing in this UI parses HTML from a string.

type Attrs = Record<string, string | number | boolean | null | undefined>;
type Child = Node | string | null | undefined | false;

/**
 * Creates an element. Attributes whose value is false/null/undefined are left out, true sets an
 * empty attribute. String children become text nodes.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "style") throw new Error("inline styles are not allowed by the CSP");
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces all children. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** Sets text only when it changed (keeps screen readers and layout calm). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Marks a form field invalid (`aria-invalid="true"`, which screen readers announce and the
 * styles match) or valid (the attribute removed). `toggleAttribute` would leave
 * `aria-invalid=""`, which reads as not invalid.
 */
export function setInvalid(el: Element, invalid: boolean): void {
  if (invalid) el.setAttribute("aria-invalid", "true");
  else el.removeAttribute("aria-invalid");
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
}

/** An inline SVG icon from the sprite-free set below (built with DOM calls, not markup). */
export function icon(name: IconName): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  for (const d of ICONS[name]) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}

export type IconName =
  | "plus"
  | "search"
  | "help"
  | "back"
  | "send"
  | "close"
  | "settings"
  | "hash"
  | "at"
  | "globe"
  | "down"
  | "power"
  | "inspect";

const ICONS: Record<IconName, string[]> = {
  plus: ["M12 5v14", "M5 12h14"],
  search: ["M11 4a7 7 0 1 0 0 14a7 7 0 1 0 0-14z", "M20 20l-4-4"],
  help: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z", "M9.5 9.5a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .8-1 1.5v.7", "M12 17h.01"],
  back: ["M15 5l-7 7l7 7"],
  send: ["M4 12l16-8l-6 16l-3-7z", "M11 13l9-9"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  settings: ["M12 9a3 3 0 1 0 0 6a3 3 0 1 0 0-6z", "M12 2v3", "M12 19v3", "M2 12h3", "M19 12h3", "M4.9 4.9l2.1 2.1", "M17 17l2.1 2.1", "M4.9 19.1L7 17", "M17 7l2.1-2.1"],
  hash: ["M9 4L7 20", "M17 4l-2 16", "M4 9h16", "M3 15h16"],
  at: ["M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8z", "M16 12v1.5a2.5 2.5 0 0 0 5 0V12a9 9 0 1 0-3.5 7.1"],
  globe: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z", "M3 12h18", "M12 3c2.5 2.7 3.8 5.7 3.8 9s-1.3 6.3-3.8 9c-2.5-2.7-3.8-5.7-3.8-9s1.3-6.3 3.8-9z"],
  down: ["M12 5v14", "M6 13l6 6l6-6"],
  power: ["M12 3v9", "M6.3 6.3a8 8 0 1 0 11.4 0"],
  inspect: ["M8 4c-2 0-2 2-2 4s-2 4-2 4s2 0 2 4s0 4 2 4", "M16 4c2 0 2 2 2 4s2 4 2 4s-2 0-2 4s0 4-2 4"],
};
