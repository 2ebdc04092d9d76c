// Start-up, the API-key gate and the view switcher (#channels, #guide, #recordings, #status).
// Nothing but the key form is shown until the proxy has accepted a key (when it wants one).

import { apiKey, get, onUnauthorized, setApiKey } from "./api.js";
import { renderChannels } from "./channels.js";
import { forget } from "./data.js";
import { renderGuide } from "./guide.js";
import { setupPlayer, stop } from "./player.js";
import { renderRecordings } from "./recordings.js";
import { startStatus, stopStatus } from "./status.js";
import { $ } from "./util.js";

const VIEWS = {
  channels: renderChannels,
  guide: renderGuide,
  recordings: renderRecordings,
  status: (settings) => startStatus(settings, showError),
};
let settings = null;
// now/next and the progress bars move on; re-drawn unless the keyboard is inside the list
const CHANNELS_REFRESH_MS = 30_000;
let channelsTimer = null;

function showError(error) {
  $("#page-error").textContent = error ? `Could not load: ${error.message}` : "";
}

function lock(message = "") {
  stop();
  stopStatus();
  clearInterval(channelsTimer);
  forget();
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  $("#nav").hidden = true;
  $("#keygate").hidden = false;
  $("#keyerror").textContent = message;
  $("#keyinput").focus();
}

async function show() {
  const name = (location.hash || "#channels").slice(1);
  const view = VIEWS[name] ? name : "channels";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  if (view !== "status") stopStatus();
  clearInterval(channelsTimer);
  if (view === "channels") {
    channelsTimer = setInterval(() => {
      if (!$("#channel-list").contains(document.activeElement)) renderChannels(settings).catch(showError);
    }, CHANNELS_REFRESH_MS);
  }
  showError(null);
  document.body.dataset.view = view;
  try {
    await VIEWS[view](settings);
    document.body.dataset.loaded = view;
  } catch (error) {
    if (error.status !== 401) showError(error);
  }
}

function unlock() {
  $("#keygate").hidden = true;
  $("#nav").hidden = false;
  show();
}

async function tryKey(key) {
  setApiKey(key);
  try {
    await get("/api/channels");
    return true;
  } catch (error) {
    setApiKey("");
    $("#keyerror").textContent = error.status === 401 ? "That key was not accepted." : `Error: ${error.message}`;
    return false;
  }
}

async function boot() {
  setupPlayer();
  settings = await (await fetch("/ui/settings.json")).json();
  onUnauthorized(() => { if (settings.auth) lock("The key is no longer accepted; enter it again."); });
  $("#keyform").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await tryKey($("#keyinput").value.trim())) {
      $("#keyinput").value = "";
      unlock();
    }
  });
  window.addEventListener("hashchange", () => { if ($("#keygate").hidden) show(); });
  if (settings.auth && !apiKey()) lock();
  else unlock();
}

boot().catch(showError);
