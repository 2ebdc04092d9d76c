// Channels: logo, number, name, what is on now (with progress) and next, viewers; a click plays the
// channel in the page; buttons copy its HLS and TS URLs and the whole line-up's M3U URL.

import { get } from "./api.js";
import { externalUrl, iconUrl, loadChannels, loadEpg, nowNext } from "./data.js";
import { play } from "./player.js";
import { $, clear, copyText, el, hhmm } from "./util.js";

function programme(label, item, now) {
  if (!item) return el("p", { class: "prog muted" }, `${label}: no guide data`);
  const parts = [el("span", { class: "prog-time" }, `${hhmm(item.start)}`), " ", item.title];
  const line = el("p", { class: "prog", "data-role": label.toLowerCase() }, el("span", { class: "sr" }, `${label}: `),
    ...parts);
  if (label === "Now") {
    const done = Math.min(1, Math.max(0, (now - item.start) / (item.end - item.start)));
    return el("div", { class: "now" }, line,
      el("progress", { max: "100", value: String(Math.round(done * 100)), "aria-label": "progress of the programme" }));
  }
  return line;
}

export function watch(channel, settings) {
  // with timeshift the proxy can begin at the programme's start (EXT-X-START, which hls.js follows)
  const startOverUrl = settings.timeshift ? `${channel.hls_url}?start=programme` : null;
  return play({ title: `${channel.number} ${channel.name}`, url: channel.hls_url, vlcUrl: channel.ts_url, startOverUrl },
    settings);
}

export async function renderChannels(settings) {
  const list = $("#channel-list");
  const [channels, epg, status] = await Promise.all([
    loadChannels(),
    loadEpg().catch(() => null),
    get("/api/status").catch(() => null),
  ]);
  const viewers = new Map();
  for (const s of (status && status.streams) || []) {
    if (s.kind === "channel") viewers.set(s.id, (viewers.get(s.id) || 0) + s.viewers);
  }
  const now = Date.now() / 1000;
  clear(list);
  const m3u = externalUrl(new URL("/playlist.m3u", location.href).toString());
  list.before(toolbar(m3u));
  for (const channel of channels) {
    const row = epg && epg.byChannel.get(channel.id);
    const { now: current, next } = nowNext((row && row.listings) || [], now);
    const logo = el("img", { class: "logo", alt: "", width: "48", height: "48" });
    iconUrl(channel).then((src) => { if (src) logo.src = src; else logo.classList.add("none"); });
    const count = viewers.get(channel.id) || 0;
    const playButton = el("button", {
      type: "button", class: "play", "data-channel": channel.id,
      "aria-label": `Play ${channel.number} ${channel.name}`,
      onclick: () => watch(channel, settings),
    }, logo, el("span", { class: "num" }, channel.number), el("span", { class: "name" }, channel.name));
    const copies = el("div", { class: "copies" },
      el("button", { type: "button", onclick: (e) => copyText(externalUrl(channel.hls_url), e.currentTarget) }, "Copy HLS"),
      el("button", { type: "button", onclick: (e) => copyText(externalUrl(channel.ts_url), e.currentTarget) }, "Copy TS"));
    list.append(el("li", { class: "channel", "data-channel": channel.id },
      playButton,
      el("div", { class: "epg" }, programme("Now", current, now), programme("Next", next, now)),
      el("div", { class: "side" },
        el("span", { class: "viewers", title: "viewers watching" }, `${count} watching`), copies)));
  }
}

function toolbar(m3u) {
  const old = $("#channels-toolbar");
  if (old) old.remove();
  return el("div", { id: "channels-toolbar", class: "toolbar" },
    el("button", { type: "button", onclick: (e) => copyText(m3u, e.currentTarget) }, "Copy M3U URL"),
    el("span", { class: "muted" }, "for VLC, Kodi or TiviMate"));
}
