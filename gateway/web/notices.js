// One strip of notices under the top bar. A notice has an id, so a repeated condition (still
// reconnecting, still rate limited) updates its notice instead of stacking new ones.

import { el } from "./dom.js";

export class Notices {
  constructor(container) {
    this.container = container;
    this.items = new Map();
  }

  /**
   * Show or update a notice. kind: info | warn | error. Errors are announced at once
   * (role=alert); the others politely.
   */
  show(id, kind, text, { timeoutMs = 0, action = null } = {}) {
    let item = this.items.get(id);
    if (!item) {
      item = { node: el("div", { class: "notice", dataset: { id } }), timer: 0 };
      this.items.set(id, item);
      this.container.append(item.node);
    }
    const node = item.node;
    node.className = `notice ${kind}`;
    node.setAttribute("role", kind === "error" ? "alert" : "status");
    const children = [el("p", { class: "notice-text", text })];
    if (action) children.push(el("button", { type: "button", class: "notice-action", onclick: action.run, text: action.label }));
    children.push(el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss", onclick: () => this.hide(id), text: "×" }));
    node.replaceChildren(...children);
    clearTimeout(item.timer);
    if (timeoutMs) item.timer = setTimeout(() => this.hide(id), timeoutMs);
  }

  hide(id) {
    const item = this.items.get(id);
    if (!item) return;
    clearTimeout(item.timer);
    item.node.remove();
    this.items.delete(id);
  }

  has(id) {
    return this.items.has(id);
  }
}
