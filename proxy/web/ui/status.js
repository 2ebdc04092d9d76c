// Status: NextPVR reachable and its version, tuners in use / total, every running stream with its
// mode, viewers, upstream bitrate and uptime, the proxy's uptime and memory; refreshed every few s.

import { get } from "./api.js";
import { loadChannels } from "./data.js";
import { $, bitrate, bytes, clear, duration, el } from "./util.js";

let timer = null;

function field(label, value, name) {
  return [el("dt", {}, label), el("dd", { "data-field": name }, value)];
}

export async function renderStatus(settings) {
  const box = $("#status");
  const [body, channels] = await Promise.all([get("/api/status"), loadChannels().catch(() => [])]);
  const names = new Map(channels.map((c) => [c.id, `${c.number} ${c.name}`]));
  const n = body.nextpvr;
  clear(box);
  box.append(
    el("h2", {}, "NextPVR"),
    el("dl", { class: "facts" },
      field("Reachable", n.reachable ? "yes" : `no (${n.error})`, "reachable"),
      field("Version", n.version || "–", "version"),
      field("Tuners in use", n.tuners_total === null ? "–" : `${n.tuners_in_use} / ${n.tuners_total}`, "tuners")),
    el("h2", {}, "Proxy"),
    el("dl", { class: "facts" },
      field("Version", body.proxy.version, "proxy-version"),
      field("Uptime", duration(body.proxy.uptime), "uptime"),
      field("Memory", bytes(body.proxy.memory_bytes), "memory"),
      field("Viewers", String(Object.values(body.proxy.viewers).reduce((a, b) => a + b, 0)), "viewers")),
    el("h2", {}, "Running streams"));
  if (!body.streams.length) {
    box.append(el("p", { class: "muted", "data-field": "no-streams" }, "Nothing is running."));
  } else {
    const rows = body.streams.map((s) => el("tr", { "data-stream": `${s.kind}-${s.id}-${s.mode}` },
      el("td", {}, s.kind === "channel" ? names.get(s.id) || `channel ${s.id}` : `recording ${s.id}`),
      el("td", { "data-field": "mode" }, s.profile ? `${s.mode} (${s.profile})` : s.mode),
      el("td", { "data-field": "viewers" }, String(s.viewers)),
      el("td", { "data-field": "bitrate" }, bitrate(s.upstream_bps)),
      el("td", { "data-field": "uptime" }, duration(s.uptime))));
    box.append(el("div", { class: "table-wrap" }, el("table", { class: "streams" },
      el("thead", {}, el("tr", {}, ...["Stream", "Mode", "Viewers", "Upstream", "Uptime"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows))));
  }
  box.append(el("p", { class: "muted", "data-field": "updated" }, `Updated ${new Date().toLocaleTimeString()}`));
}

export function startStatus(settings, onError) {
  stopStatus();
  const tick = () => renderStatus(settings).catch(onError);
  timer = setInterval(tick, settings.status_refresh * 1000);
  return tick();
}

export function stopStatus() {
  if (timer) clearInterval(timer);
  timer = null;
}
