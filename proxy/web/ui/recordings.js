// Recordings: completed, in progress and scheduled; play; with the admin key, delete.

import { adminKey, get, request, setAdminKey } from "./api.js";
import { play, playingUrl, stop } from "./player.js";
import { $, clear, dayAndTime, duration, el } from "./util.js";

const GROUPS = [
  ["recording", "In progress"],
  ["ready", "Completed"],
  ["pending", "Scheduled"],
  ["failed", "Failed"],
  ["conflict", "Conflicts"],
];

// the admin key is asked for the first time a write action needs it, then kept like the API key
export function askAdmin() {
  if (adminKey()) return true;
  const key = window.prompt("Admin key (auth.admin_key) for recording actions:");
  if (!key) return false;
  setAdminKey(key.trim());
  return true;
}

export async function renderRecordings(settings) {
  const box = $("#recordings");
  const { recordings } = await get("/api/recordings");
  clear(box);
  for (const [status, title] of GROUPS) {
    const items = recordings.filter((r) => r.status === status);
    if (!items.length && (status === "failed" || status === "conflict")) continue;
    if (status === "ready" || status === "failed") items.reverse(); // newest first
    const list = el("ul", { class: "recs" });
    for (const rec of items) list.append(item(rec, settings));
    if (!items.length) list.append(el("li", { class: "muted" }, "None."));
    box.append(el("section", { class: "rec-group", "data-status": status }, el("h2", {}, title), list));
  }
}

function item(rec, settings) {
  const actions = el("div", { class: "actions" });
  if (rec.url) {
    actions.append(el("button", {
      type: "button", onclick: () => play({ title: rec.name, url: `${rec.url}.m3u8`, vlcUrl: rec.url }, settings),
    }, "Play"));
  }
  if (settings.admin) {
    actions.append(el("button", {
      type: "button", class: "danger",
      onclick: async (event) => {
        if (!askAdmin()) return;
        const verb = rec.status === "pending" ? "Cancel" : "Delete";
        if (!window.confirm(`${verb} "${rec.name}"?`)) return;
        event.currentTarget.disabled = true;
        // a recording being watched is closed first: its segments are gone once it is deleted
        if (rec.url && playingUrl() === `${rec.url}.m3u8`) stop();
        try {
          await request(`/api/recordings/${rec.id}`, { method: "DELETE", admin: true });
          await renderRecordings(settings);
        } catch (error) {
          if (error.status === 401) setAdminKey("");
          event.currentTarget.disabled = false;
          window.alert(`Not deleted: ${error.message}`);
        }
      },
    }, rec.status === "pending" ? "Cancel" : "Delete"));
  }
  return el("li", { class: "rec", "data-recording": rec.id },
    el("div", {},
      el("strong", {}, rec.name), rec.subtitle ? ` – ${rec.subtitle}` : "",
      el("p", { class: "muted" }, `${rec.channel || ""} · ${dayAndTime(rec.start)} · ${duration(rec.duration)}`)),
    actions);
}
