// HLS in a <video>: hls.js where the browser has Media Source Extensions (the order hls.js itself
// recommends: it reports errors with HTTP statuses and behaves the same everywhere), the browser's
// own HLS where it has that instead (iOS), and otherwise a message with the URL for VLC.

import { apiKey, keyHeaders, preflight } from "./api.js";
import { $, clear, el } from "./util.js";

let hlsLoading = null;
let current = null;

function loadHls(url) {
  if (!url) return Promise.resolve(null);
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => resolve(window.Hls || null);
      script.onerror = () => resolve(null);
      document.head.append(script);
    });
  }
  return hlsLoading;
}

function say(text, kind = "info", extra = null) {
  const box = $("#player-message");
  clear(box);
  box.className = `message ${kind}`;
  box.append(text);
  if (extra) box.append(" ", extra);
}

function withKey(url) {
  // a <video> element cannot send headers; the proxy also takes the key as a query parameter
  const key = apiKey();
  if (!key) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("api_key", key);
  return u.toString();
}

export function explain(error) {
  if (error && error.status === 503 && error.retryAfter) {
    return `All tuners are busy. Try again in ${error.retryAfter} s.`;
  }
  if (error && error.status === 503) return `Not available right now: ${error.message}. Try again shortly.`;
  if (error && error.status === 404) return "This channel or recording no longer exists.";
  if (error && (error.status === 502 || error.status === 504)) {
    return `NextPVR did not deliver the stream (${error.message}).`;
  }
  if (error && error.status === 401) return "The API key was not accepted.";
  return `Playback failed: ${(error && error.message) || "unknown error"}.`;
}

export function stop() {
  if (current && current.hls) current.hls.destroy();
  const video = $("#video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  current = null;
  $("#player").hidden = true;
}

/** The playlist URL being played (null when the player is closed). */
export function playingUrl() {
  return current ? current.url : null;
}

export async function play({ title, url, vlcUrl, startOverUrl = null }, settings) {
  stop();
  const token = { url };
  current = token;
  $("#player").hidden = false;
  $("#player-title").textContent = title;
  const startOver = $("#player-startover");
  startOver.hidden = !startOverUrl || url === startOverUrl;
  startOver.onclick = () => play({ title, url: startOverUrl, vlcUrl, startOverUrl }, settings);
  const video = $("#video");
  say("Starting…");
  try {
    await preflight(url);
  } catch (error) {
    if (current === token) say(explain(error), "error");
    return;
  }
  if (current !== token) return;
  const Hls = await loadHls(settings.hlsjs_url);
  if (current !== token) return;
  if (Hls && Hls.isSupported()) {
    const hls = new Hls({
      // LL-HLS remux playlists: catch up to PART-HOLD-BACK by playing slightly fast (hls.js leaves a
      // viewer who paused or started over alone: it only adjusts within a target duration of live);
      // measured ~0.8 s behind live against ~2.8 s without (benchmarks/README.md, latency)
      lowLatencyMode: true,
      maxLiveSyncPlaybackRate: 1.5,
      xhrSetup: (xhr) => {
        for (const [name, value] of Object.entries(keyHeaders())) xhr.setRequestHeader(name, value);
      },
    });
    token.hls = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || current !== token) return;
      const status = data.response && data.response.code;
      if (status) {
        say(explain({ status, message: data.details, retryAfter: null }), "error");
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        say(`Playback stopped (${data.details}).`, "error");
      }
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = withKey(url);
    video.addEventListener("error", () => {
      if (current === token) say("The browser could not play this stream.", "error");
    }, { once: true });
  } else {
    const link = el("a", { href: withKey(vlcUrl) }, "open it in VLC");
    say("This browser cannot play HLS here; copy the stream URL or", "error", link);
    return;
  }
  video.addEventListener("playing", () => {
    if (current === token) say("");
  }, { once: true });
  try {
    video.muted = false;
    await video.play();
  } catch {
    // autoplay with sound refused: start muted, the controls let the viewer unmute
    video.muted = true;
    try { await video.play(); } catch { /* the viewer presses play */ }
  }
}

export function setupPlayer() {
  $("#player-close").addEventListener("click", stop);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("#player").hidden && !document.querySelector("dialog[open]")) stop();
  });
}
