// Guide: the next 24 hours as a grid, one row per channel, a line at "now", details on click
// (watch the channel; with the admin key, record it with the configured padding).

import { request } from "./api.js";
import { watch } from "./channels.js";
import { loadChannels, loadEpg } from "./data.js";
import { $, clear, dayAndTime, duration, el, hhmm } from "./util.js";
import { askAdmin } from "./recordings.js";

const PX_PER_MIN = 4;

export async function renderGuide(settings) {
  const grid = $("#guide-grid");
  const HEAD_PX = window.matchMedia("(max-width: 720px)").matches ? 110 : 150;
  const [channels, epg] = await Promise.all([loadChannels(), loadEpg()]);
  const start = Math.floor(epg.now / 1800) * 1800;
  const end = epg.end;
  const width = ((end - start) / 60) * PX_PER_MIN;
  const x = (t) => ((Math.max(t, start) - start) / 60) * PX_PER_MIN;
  clear(grid);
  grid.style.setProperty("--head", `${HEAD_PX}px`);
  const times = el("div", { class: "g-row g-times" }, el("div", { class: "g-head" }, ""));
  const track = el("div", { class: "g-track", style: `width:${width}px` });
  for (let t = start; t < end; t += 1800) {
    track.append(el("span", { class: "g-tick", style: `left:${x(t)}px` }, hhmm(t)));
  }
  times.append(track);
  grid.append(times);
  for (const channel of channels) {
    const row = epg.byChannel.get(channel.id);
    const cells = el("div", { class: "g-track", style: `width:${width}px` });
    for (const item of (row && row.listings) || []) {
      if (item.end <= start) continue;
      const left = x(item.start);
      const w = Math.max(x(item.end) - left, 2);
      const onNow = item.start <= epg.now && epg.now < item.end;
      cells.append(el("button", {
        type: "button", class: onNow ? "g-prog on-now" : "g-prog", style: `left:${left}px;width:${w}px`,
        title: `${hhmm(item.start)} ${item.title}`, "data-event": item.event_id,
        onclick: () => details(channel, item, settings),
      }, el("span", { class: "g-title" }, item.title), el("span", { class: "g-time" }, hhmm(item.start))));
    }
    if (row && row.error) cells.append(el("span", { class: "g-none" }, `no guide: ${row.error}`));
    grid.append(el("div", { class: "g-row", "data-channel": channel.id },
      el("div", { class: "g-head" }, el("span", { class: "num" }, channel.number), " ", channel.name), cells));
  }
  grid.append(el("div", { class: "g-now", style: `left:${HEAD_PX + x(epg.now)}px`, "aria-hidden": "true" }));
}

function details(channel, item, settings) {
  const dialog = $("#details");
  $("#details-title").textContent = item.title + (item.subtitle ? ` – ${item.subtitle}` : "");
  $("#details-when").textContent =
    `${channel.number} ${channel.name} · ${dayAndTime(item.start)}–${hhmm(item.end)} (${duration(item.end - item.start)})`;
  $("#details-text").textContent = item.description || "";
  $("#details-result").textContent = "";
  $("#details-play").onclick = () => { dialog.close(); watch(channel, settings); };
  const record = $("#details-record");
  record.hidden = !settings.admin || item.end <= Date.now() / 1000;
  record.onclick = async () => {
    if (!askAdmin()) return;
    try {
      await request("/api/recordings", { method: "POST", body: { event_id: item.event_id }, admin: true });
      $("#details-result").textContent =
        `Scheduled (with ${settings.pre_padding} min before and ${settings.post_padding} min after).`;
    } catch (error) {
      $("#details-result").textContent = `Not scheduled: ${error.message}`;
    }
  };
  dialog.showModal();
}
