// The drill catalog (`GET /v1/drills`, loaded once per page) and how a drill id reads in a list:
// its title and minutes, opening to its description. Shared by today's practice and feedback.

import { getJson } from "./api.js";
import { el } from "./dom.js";
import { humanize } from "./panel.js";

export class DrillCatalog {
  constructor() {
    this.byId = null; // id -> drill, once loaded
    this.loading = null;
  }

  /** Load the catalog once; a failure is thrown to the caller and retried on the next call. */
  async load(token) {
    if (this.byId) return;
    this.loading ??= getJson("/v1/drills", token).then(
      (body) => {
        this.byId = new Map((Array.isArray(body?.drills) ? body.drills : []).map((d) => [String(d.id), d]));
      },
      (err) => {
        this.loading = null;
        throw err;
      },
    );
    await this.loading;
  }

  /** One `<li>` for a drill id: the catalog's title, minutes and description when known. */
  item(id) {
    const drill = this.byId?.get(String(id));
    if (!drill) return el("li", { class: "drill", dataset: { drillId: id } }, el("span", { class: "drill-title", text: humanize(id) }));
    return el(
      "li",
      { class: "drill", dataset: { drillId: id } },
      el(
        "details",
        {},
        el("summary", {}, el("span", { class: "drill-title", text: drill.title }), el("span", { class: "muted small drill-minutes", text: `${drill.minutes} min` })),
        el("p", { class: "small drill-desc", text: drill.description }),
      ),
    );
  }
}
