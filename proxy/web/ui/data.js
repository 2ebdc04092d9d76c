// What several views share, fetched once and reused for a short while: the channel list and the
// next 24 hours of programmes (one /api/epg call covers now/next and the guide grid).

import { get, keyHeaders } from "./api.js";

const EPG_TTL_MS = 60_000;
let channels = null;
let epg = null;
let epgAt = 0;
const icons = new Map();

export async function loadChannels() {
  if (!channels) channels = get("/api/channels").then((body) => body.channels);
  try {
    return await channels;
  } catch (error) {
    channels = null;
    throw error;
  }
}

export async function loadEpg() {
  if (!epg || Date.now() - epgAt > EPG_TTL_MS) {
    epgAt = Date.now();
    epg = get("/api/epg").then((body) => {
      const byChannel = new Map(body.channels.map((row) => [row.channel_id, row]));
      return { ...body, byChannel };
    });
  }
  try {
    return await epg;
  } catch (error) {
    epg = null;
    throw error;
  }
}

export function forget() {
  channels = null;
  epg = null;
}

// now and next of one channel's listings at time `now` (epoch seconds)
export function nowNext(listings, now) {
  const index = listings.findIndex((x) => x.start <= now && now < x.end);
  if (index >= 0) return { now: listings[index], next: listings[index + 1] || null };
  return { now: null, next: listings.find((x) => x.start > now) || null };
}

// Icons are fetched with the key header and shown as object URLs, so no key is put into an
// <img src>. The map holds one entry per channel (bounded by the line-up).
export function iconUrl(channel) {
  if (!channel.icon_url) return Promise.resolve(null);
  if (!icons.has(channel.id)) {
    icons.set(channel.id, fetch(channel.icon_url, { headers: keyHeaders() })
      .then((r) => (r.ok ? r.blob() : null))
      .then((blob) => (blob ? URL.createObjectURL(blob) : null))
      .catch(() => null));
  }
  return icons.get(channel.id);
}

// a URL for a player outside the browser (VLC, Kodi): those cannot send a header
export function externalUrl(url) {
  const key = keyHeaders()["X-API-Key"];
  if (!key) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("api_key", key);
  return u.toString();
}
