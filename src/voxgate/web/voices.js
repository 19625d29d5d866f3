// Register a voice: a file or a microphone recording, the speaker's consent
// and an optional transcript, sent to POST /v1/audio/voices as multipart.

import { ApiError, asApiError, getJson } from "./api.js";
import { $, el, showError } from "./ui.js";

const MAX_RECORD_S = 15; // the longest speech a prompt may hold (VOXGATE_VOICE_MAX_SECONDS)
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", ""];

export function setupRegistration(state, { onRegistered }) {
  const form = $("voice-form");
  const fileInput = $("voice-file");
  const recordButton = $("record-button");
  const recordStatus = $("record-status");
  const preview = $("record-preview");
  const errorBox = $("register-error");
  const resultBox = $("register-result");
  const submit = $("register-button");

  let recording = null; // {blob, filename, seconds}
  let recorder = null;
  let timer = null;

  const fail = (error) => {
    state.state = "error";
    state.error = { code: error.code, message: error.message, hint: error.hint };
    showError(errorBox, error);
  };

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) {
      recording = null;
      preview.hidden = true;
      recordStatus.textContent = `Using the file ${fileInput.files[0].name}.`;
    }
  });

  recordButton.addEventListener("click", async () => {
    if (recorder && recorder.state === "recording") {
      recorder.stop();
      return;
    }
    showError(errorBox, null);
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      fail(
        new ApiError({
          code: "microphone_unavailable",
          message: "This browser cannot record here.",
          hint: "Browsers allow the microphone only on https:// or http://localhost pages; upload a file instead.",
        }),
      );
      return;
    }
    let stream;
    try {
      // Raw input: the intake judges noise and level itself, and browser
      // processing (noise suppression, gain) would hide what it should see.
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      fail(
        new ApiError({
          code: "microphone_unavailable",
          message: `The microphone could not be opened (${err.name}: ${err.message}).`,
          hint: "Allow microphone access for this page, or upload a file instead.",
        }),
      );
      return;
    }
    const mimeType = RECORDING_TYPES.find((t) => !t || MediaRecorder.isTypeSupported(t));
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    const chunks = [];
    const started = performance.now();
    recorder.ondataavailable = (event) => {
      if (event.data.size) chunks.push(event.data);
    };
    recorder.onstop = () => {
      clearInterval(timer);
      for (const track of stream.getTracks()) track.stop();
      const type = recorder.mimeType || "audio/webm";
      const blob = new Blob(chunks, { type });
      const secondsTaken = (performance.now() - started) / 1000;
      const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
      recording = { blob, filename: `recording.${ext}`, seconds: secondsTaken };
      fileInput.value = "";
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(blob);
      preview.hidden = false;
      recordButton.textContent = "Record again";
      recordButton.setAttribute("aria-pressed", "false");
      recordStatus.textContent = `Recorded ${secondsTaken.toFixed(1)} s; it will be registered.`;
      state.recordedSeconds = secondsTaken;
      state.recording = "recorded";
    };
    recorder.start(250);
    state.recording = "recording";
    recordButton.textContent = "Stop recording";
    recordButton.setAttribute("aria-pressed", "true");
    const tick = () => {
      const elapsed = (performance.now() - started) / 1000;
      recordStatus.textContent = `Recording… ${elapsed.toFixed(0)} s (speak 3–15 s)`;
      if (elapsed >= MAX_RECORD_S && recorder.state === "recording") recorder.stop();
    };
    tick();
    timer = setInterval(tick, 250);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errorBox, null);
    resultBox.hidden = true;
    const file = fileInput.files[0];
    if (!file && !recording) {
      fail(
        new ApiError({
          code: "audio_missing",
          message: "No recording chosen.",
          hint: "Choose an audio file (3–15 s of speech) or record one with the microphone.",
        }),
      );
      return;
    }
    const data = new FormData();
    if (recording) data.append("audio_sample", recording.blob, recording.filename);
    else data.append("audio_sample", file, file.name);
    data.append("name", $("voice-name").value.trim());
    data.append("consent", $("voice-consent").value.trim());
    const transcript = $("voice-transcript").value.trim();
    if (transcript) data.append("prompt_text", transcript);
    const language = $("voice-language").value.trim();
    if (language) data.append("language", language);

    state.state = "registering";
    state.error = null;
    submit.disabled = true;
    submit.textContent = "Registering…";
    try {
      const voice = await getJson("v1/audio/voices", { method: "POST", form: data });
      state.state = "registered";
      state.voice = voice;
      showReport(resultBox, voice);
      await onRegistered(voice);
    } catch (err) {
      fail(asApiError(err));
    } finally {
      submit.disabled = false;
      submit.textContent = "Register voice";
    }
  });
}

function showReport(box, voice) {
  const intake = voice.intake || {};
  const rows = [
    ["Voice id", voice.id],
    ["Name", voice.name],
    ["Speech kept", intake.seconds != null ? `${intake.seconds.toFixed(2)} s` : null],
    ["Recording", intake.original_seconds != null ? `${intake.original_seconds.toFixed(2)} s` : null],
    ["Format", [intake.container, intake.codec].filter(Boolean).join(" / ") || null],
    ["Sample rate", intake.original_sample_rate ? `${intake.original_sample_rate} Hz` : null],
    ["Peak", intake.peak_dbfs != null ? `${intake.peak_dbfs.toFixed(1)} dBFS` : null],
    ["Estimated SNR", intake.snr_db != null ? `${intake.snr_db.toFixed(1)} dB` : null],
    ["Transcript", voice.prompt_text ? `${voice.prompt_text} (${voice.transcript_source || "given"})` : "none"],
  ];
  const list = el("dl", { class: "report" });
  for (const [name, value] of rows) {
    if (value === null || value === undefined) continue;
    list.append(el("div", {}, el("dt", { text: name }), el("dd", { text: String(value) })));
  }
  box.replaceChildren(el("h3", { text: `Registered “${voice.name || voice.id}”` }), list);
  const notes = [...(intake.warnings || []).map((w) => `Warning: ${w}`), ...(voice.notes || [])];
  if (notes.length) {
    const ul = el("ul", { class: "notes" });
    for (const note of notes) {
      ul.append(el("li", { text: typeof note === "string" ? note : JSON.stringify(note) }));
    }
    box.append(ul);
  }
  box.hidden = false;
}
