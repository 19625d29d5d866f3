// Long text as a background job: submit, follow its progress, then play and
// download the result and its subtitles.
//
// Progress comes from GET /v1/jobs/{id}/events read with fetch() rather than
// EventSource, because EventSource cannot send the Authorization header an API
// key needs. Should that stream end early (a proxy's timeout, a dropped
// connection), the page falls back to polling GET /v1/jobs/{id}.

import { ApiError, apiKey, asApiError, getJson, request, url } from "./api.js";
import { $, blobLink, showError } from "./ui.js";

const POLL_MS = 1000;

export function setupJobs(state, { settings }) {
  const button = $("job-button");
  const cancel = $("job-cancel");
  const progress = $("job-progress");
  const progressText = $("job-progress-text");
  const errorBox = $("job-error");
  const resultBox = $("job-result");
  let current = null; // {id, controller}

  function update(job) {
    const p = job.progress || {};
    const fraction = job.state === "succeeded" ? 1 : p.fraction || 0;
    progress.value = fraction;
    progress.dataset.state = job.state;
    state.id = job.id;
    state.state = job.state;
    state.fraction = fraction;
    state.segmentsDone = p.segments_done;
    state.segmentsTotal = p.segments_total;
    const parts = [`${Math.round(fraction * 100)}%`, job.state];
    if (p.segments_total) parts.push(`${p.segments_done}/${p.segments_total} segments`);
    if (p.audio_seconds) parts.push(`${p.audio_seconds.toFixed(1)} s of audio`);
    progressText.textContent = parts.join(" · ");
    progress.setAttribute("aria-valuetext", progressText.textContent);
  }

  async function finish(job) {
    cancel.disabled = true;
    button.disabled = false;
    if (job.state === "succeeded") {
      await showResult(job);
    } else if (job.state === "failed") {
      const error = job.error || {};
      const failure = new ApiError({
        code: error.code || "job_failed",
        message: error.message || "The job failed.",
        hint: "Segments are retried before a job fails; check the engine and submit again.",
      });
      state.error = { code: failure.code, message: failure.message, hint: failure.hint };
      showError(errorBox, failure);
    }
  }

  async function showResult(job) {
    const result = job.result;
    const links = [
      [$("job-audio-link"), result.audio_url, `${job.id}.${result.format}`],
      [$("job-srt-link"), result.subtitles.srt, `${job.id}.srt`],
      [$("job-vtt-link"), result.subtitles.vtt, `${job.id}.vtt`],
    ];
    const audio = $("job-audio");
    if (!apiKey()) {
      // Plain links: the browser streams and seeks with range requests.
      for (const [link, path, filename] of links) {
        link.href = url(path);
        link.download = filename;
      }
      audio.src = url(result.audio_url);
    } else {
      // With a key every request needs its header, which links and <audio>
      // cannot send: fetch the files and hand out blob: URLs.
      for (const [link, path, filename] of links) {
        const blob = await (await request(path)).blob();
        blobLink(link, blob, filename);
      }
      audio.src = $("job-audio-link").href;
    }
    state.audioUrl = $("job-audio-link").href;
    resultBox.hidden = false;
  }

  /** Progress from the event stream; true if it delivered the final job. */
  async function stream(id, signal) {
    const response = await request(`v1/jobs/${encodeURIComponent(id)}/events`, { signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseEvent(block);
        if (!event) continue;
        const job = JSON.parse(event.data);
        update(job);
        if (event.type === "done") {
          await finish(job);
          return true;
        }
      }
    }
  }

  async function poll(id, signal) {
    for (;;) {
      const job = await getJson(`v1/jobs/${encodeURIComponent(id)}`, { signal });
      update(job);
      if (["succeeded", "failed", "cancelled"].includes(job.state)) {
        await finish(job);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  async function follow(id, signal) {
    let ended = false;
    try {
      ended = await stream(id, signal);
    } catch (err) {
      const error = asApiError(err);
      if (error.code === "cancelled" || error.status) throw error; // stopped, or refused
    }
    state.polled = !ended;
    if (!ended) await poll(id, signal);
  }

  button.addEventListener("click", async () => {
    if (current) current.controller.abort();
    showError(errorBox, null);
    resultBox.hidden = true;
    progress.value = 0;
    progressText.textContent = "submitting…";
    Object.assign(state, {
      state: "submitting",
      id: null,
      fraction: 0,
      error: null,
      audioUrl: null,
      polled: false,
    });
    const body = { ...settings(), text: $("job-text").value };
    const controller = new AbortController();
    current = { id: null, controller };
    button.disabled = true;
    try {
      const job = await getJson("v1/jobs", { method: "POST", json: body, signal: controller.signal });
      current.id = job.id;
      update(job);
      cancel.disabled = false;
      await follow(job.id, controller.signal);
    } catch (err) {
      const error = asApiError(err);
      if (error.code !== "cancelled") {
        state.state = "error";
        state.error = { code: error.code, message: error.message, hint: error.hint };
        showError(errorBox, error);
        progressText.textContent = "";
      }
      button.disabled = false;
      cancel.disabled = true;
    }
  });

  cancel.addEventListener("click", async () => {
    if (!current || !current.id) return;
    cancel.disabled = true;
    try {
      const job = await getJson(`v1/jobs/${encodeURIComponent(current.id)}`, { method: "DELETE" });
      update(job); // the event stream reports the cancellation when it lands
    } catch (err) {
      showError(errorBox, asApiError(err));
    }
  });
}

/** One server-sent event from its lines, or null for a comment (keep-alive). */
function parseEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { type, data: data.join("\n") } : null;
}
