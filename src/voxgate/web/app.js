// The voxgate playground: speak with streamed playback, register a voice, run
// a long-text job. Plain ES modules, no build step.
//
// State is mirrored on window.voxgatePlayground (and data-state attributes),
// for people poking at it in the console and for the browser tests.

import { apiKey, asApiError, getJson, request, setApiKey } from "./api.js";
import { setupJobs } from "./jobs.js";
import { StreamPlayer } from "./player.js";
import { $, blobLink, el, ms, seconds, showError } from "./ui.js";
import { setupRegistration } from "./voices.js";

const state = {
  ready: false,
  engines: [],
  voices: [],
  speak: {
    state: "idle",
    firstAudioMs: null,
    bytesAtFirstAudio: null,
    totalMs: null,
    scheduledSeconds: 0,
    playedSeconds: 0,
    sampleRate: null,
    chunks: 0,
    bytes: 0,
    gaps: 0,
    warnings: [],
    download: null,
    error: null,
  },
  register: { state: "idle", voice: null, error: null, recording: null },
  job: { state: "idle", id: null, fraction: 0, error: null, audioUrl: null },
  error: null,
};
window.voxgatePlayground = state;

const player = new StreamPlayer();
Object.defineProperty(state.speak, "playedSeconds", {
  enumerable: true,
  get: () => player.playedSeconds,
});
Object.defineProperty(state.speak, "audioContextTime", {
  enumerable: true,
  get: () => (player.context ? player.context.currentTime : 0),
});

let engines = []; // GET /v1/engines data
let voices = []; // GET /v1/audio/voices data, every page

// ---------------------------------------------------------------- catalog

async function loadEngines() {
  engines = (await getJson("v1/engines")).data;
  state.engines = engines.map((e) => e.name);
  const select = $("engine");
  const keep = select.value;
  select.replaceChildren(
    ...engines.map((e) =>
      el("option", { value: e.name, text: e.default ? `${e.name} (default)` : e.name }),
    ),
  );
  const preferred = engines.find((e) => e.name === keep) || engines.find((e) => e.default);
  if (preferred) select.value = preferred.name;
  applyCapabilities();
}

async function loadVoices() {
  const all = [];
  let after = null;
  for (;;) {
    const query = new URLSearchParams({ limit: "1000" });
    if (after) query.set("after", after);
    const page = await getJson(`v1/audio/voices?${query}`);
    all.push(...page.data);
    if (!page.has_more || !page.last_id) break;
    after = page.last_id;
  }
  voices = all;
  state.voices = voices.map((v) => v.id);
  renderVoices();
}

function renderVoices(selectId = null) {
  const select = $("voice");
  const keep = selectId ?? select.value;
  const engine = $("engine").value;
  const registered = voices.filter((v) => v.type !== "builtin");
  const builtin = voices.filter((v) => v.type === "builtin" && (!engine || v.engine === engine));
  const options = [el("option", { value: "", text: "default voice" })];
  if (registered.length) {
    const group = el("optgroup", { label: "Registered voices" });
    for (const v of registered) group.append(el("option", { value: v.id, text: voiceLabel(v) }));
    options.push(group);
  }
  if (builtin.length) {
    const group = el("optgroup", { label: `Built-in speakers (${engine})` });
    for (const v of builtin) group.append(el("option", { value: v.id, text: voiceLabel(v) }));
    options.push(group);
  }
  select.replaceChildren(...options);
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
}

function voiceLabel(v) {
  if (v.type !== "builtin") return `${v.name || "unnamed"} · ${v.id}`;
  const aliases = v.aliases && v.aliases.length ? ` (${v.aliases.join(", ")})` : "";
  return `${v.name} · ${v.id}${aliases}`;
}

/** Modes the selected engine lacks are disabled, with the reason in their label. */
function applyCapabilities() {
  const engine = engines.find((e) => e.name === $("engine").value);
  const modes = engine ? engine.capabilities.modes : [];
  for (const option of $("mode").options) {
    if (!option.value) continue;
    option.disabled = !modes.includes(option.value);
  }
  if ($("mode").selectedOptions[0]?.disabled) $("mode").value = "";
}

async function loadCatalog() {
  try {
    await loadEngines();
    await loadVoices();
    state.error = null;
    showError($("global-error"), null);
  } catch (err) {
    const error = asApiError(err);
    state.error = { code: error.code, message: error.message, hint: error.hint };
    showError($("global-error"), error);
  }
}

/** The synthesis fields shared by Speak and jobs (those of /v1/tts). */
function settings() {
  const body = { speed: Number($("speed").value), format: $("format").value };
  const engine = $("engine").value;
  const voice = $("voice").value;
  const mode = $("mode").value;
  const instruct = $("instruct").value.trim();
  if (engine) body.engine = engine;
  if (voice) body.voice = voice;
  if (mode) body.mode = mode;
  if (instruct) body.instruct = instruct;
  return body;
}

// ---------------------------------------------------------------- speak

let run = 0; // which Speak click the callbacks belong to
let controller = null;

function setSpeakState(value) {
  state.speak.state = value;
  const status = $("speak-status");
  status.dataset.state = value;
  status.textContent = value;
}

async function speak() {
  const clicked = performance.now();
  player.unlock(); // inside the click, before any await (autoplay policy)
  stopSpeaking();
  const mine = ++run;
  controller = new AbortController();
  const s = state.speak;
  Object.assign(s, {
    firstAudioMs: null,
    bytesAtFirstAudio: null,
    totalMs: null,
    scheduledSeconds: 0,
    sampleRate: null,
    chunks: 0,
    bytes: 0,
    gaps: 0,
    warnings: [],
    download: null,
    error: null,
  });
  showError($("speak-error"), null);
  $("download").hidden = true;
  $("ttfa").textContent = "–";
  $("total").textContent = "–";
  $("audio-seconds").textContent = "–";
  $("stop-button").disabled = false;
  setSpeakState("connecting");

  const body = { ...settings(), text: $("text").value, format: "pcm", stream: true };
  try {
    const response = await request("v1/tts", { method: "POST", json: body, signal: controller.signal });
    const rate = Number(response.headers.get("x-sample-rate"));
    s.sampleRate = rate;
    s.warnings = (response.headers.get("x-voxgate-warning") || "").split(",").filter(Boolean);
    await player.play(response, rate, {
      onFirstAudio: () => {
        if (mine !== run) return;
        s.firstAudioMs = performance.now() - clicked;
        s.bytesAtFirstAudio = player.bytes; // less than the total: it played while streaming
        $("ttfa").textContent = ms(s.firstAudioMs);
        setSpeakState("playing");
      },
      onProgress: () => {
        if (mine !== run) return;
        s.scheduledSeconds = player.scheduledSeconds;
        s.chunks = player.chunks;
        s.bytes = player.bytes;
        s.gaps = player.gaps;
        const gaps = player.gaps ? ` · ${player.gaps} gaps (${seconds(player.gapSeconds)})` : "";
        $("audio-seconds").textContent = `${seconds(s.scheduledSeconds)} at ${rate} Hz${gaps}`;
      },
    });
    if (mine !== run) return;
    s.totalMs = performance.now() - clicked;
    s.bytes = player.bytes;
    $("total").textContent = `${ms(s.totalMs)} (last byte)`;
    if (s.warnings.length) $("audio-seconds").textContent += ` · warnings: ${s.warnings.join(", ")}`;
    prepareDownload(mine, body).catch((err) => showError($("speak-error"), asApiError(err)));
    await player.finished;
    if (mine !== run) return;
    setSpeakState(player.chunks ? "done" : "empty");
    $("stop-button").disabled = true;
  } catch (err) {
    if (mine !== run) return;
    const error = asApiError(err);
    player.stop();
    $("stop-button").disabled = true;
    if (error.code === "cancelled") {
      setSpeakState("stopped");
      return;
    }
    s.error = { code: error.code, message: error.message, hint: error.hint };
    setSpeakState("error");
    showError($("speak-error"), error);
  }
}

function stopSpeaking() {
  if (controller) controller.abort();
  controller = null;
  player.stop();
}

/** The download link: the received PCM as WAV (or raw), or the chosen format fetched whole. */
async function prepareDownload(mine, body) {
  const link = $("download");
  const format = $("format").value;
  let blob;
  if (format === "wav" || format === "pcm") {
    blob = player.blob(format);
  } else {
    link.hidden = false;
    link.removeAttribute("href");
    link.textContent = `Preparing ${format}…`;
    const whole = { ...body, format, stream: false };
    blob = await (await request("v1/tts", { method: "POST", json: whole })).blob();
  }
  if (mine !== run) return;
  const name = format === "pcm" ? `voxgate-${player.sampleRate}hz.pcm` : `voxgate.${format}`;
  state.speak.download = { format, bytes: blob.size, href: blobLink(link, blob, name) };
  link.textContent = `Download ${format} (${(blob.size / 1024).toFixed(0)} KB)`;
}

// ---------------------------------------------------------------- wiring

function setupKey() {
  const input = $("api-key");
  const note = $("key-note");
  input.value = apiKey();
  note.textContent = input.value ? "Key saved in this browser." : "";
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    note.textContent = input.value.trim() ? "Key saved in this browser." : "No key.";
    await loadCatalog();
  });
  $("key-forget").addEventListener("click", async () => {
    input.value = "";
    setApiKey("");
    note.textContent = "Key removed.";
    await loadCatalog();
  });
}

function setupSpeak() {
  const speed = $("speed");
  const showSpeed = () => {
    $("speed-value").textContent = `${Number(speed.value).toFixed(2)}×`;
  };
  speed.addEventListener("input", showSpeed);
  showSpeed();
  $("engine").addEventListener("change", () => {
    applyCapabilities();
    renderVoices();
  });
  $("speak-button").addEventListener("click", speak);
  $("stop-button").addEventListener("click", () => {
    run += 1;
    stopSpeaking();
    setSpeakState("stopped");
    $("stop-button").disabled = true;
  });
  // Ctrl+Enter (Cmd+Enter) in the text speaks it.
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("speak-button").click();
    }
  });
}

async function main() {
  setupKey();
  setupSpeak();
  setupRegistration(state.register, {
    onRegistered: async (voice) => {
      await loadVoices();
      renderVoices(voice.id); // select the new voice
    },
  });
  setupJobs(state.job, { settings });
  await loadCatalog();
  state.ready = true;
  document.body.dataset.ready = "true";
}

main();
