package io.voxgate.client;

import java.util.Collections;
import java.util.Map;

/**
 * A job as voxgate reports it ({@code GET /v1/jobs/{id}}; docs/jobs.md).
 *
 * @param id             {@code job_...}
 * @param state          queued, running, succeeded, failed or cancelled
 * @param segmentsDone   segments synthesized so far
 * @param segmentsTotal  segments in the text
 * @param fraction       progress, 0.0-1.0
 * @param audioSeconds   audio made so far
 * @param attempts       how many times it was started (more than 1 after a crash)
 * @param errorCode      for failed jobs: the error code, else null
 * @param errorMessage   for failed jobs: what went wrong, else null
 * @param idempotencyKey the key it was submitted with
 * @param format         the audio format asked for
 * @param raw            every field of the answer, as parsed JSON
 */
public record Job(String id, String state, int segmentsDone, int segmentsTotal, double fraction,
        double audioSeconds, int attempts, String errorCode, String errorMessage, String idempotencyKey,
        AudioFormat format, Map<String, Object> raw) {

    public Job {
        raw = raw == null ? Map.of() : Collections.unmodifiableMap(raw);
    }

    /** True once the job has ended: succeeded, failed or cancelled. */
    public boolean isTerminal() {
        return "succeeded".equals(state) || "failed".equals(state) || "cancelled".equals(state);
    }

    public boolean isSucceeded() {
        return "succeeded".equals(state);
    }

    static Job of(Map<String, Object> m) {
        Map<String, Object> progress = Json.obj(m, "progress");
        Map<String, Object> error = Json.obj(m, "error");
        Map<String, Object> request = Json.obj(m, "request");
        Long done = Json.lng(progress, "segments_done");
        Long total = Json.lng(progress, "segments_total");
        Double fraction = Json.dbl(progress, "fraction");
        Double seconds = Json.dbl(progress, "audio_seconds");
        Long attempts = Json.lng(m, "attempts");
        return new Job(Json.str(m, "id"), Json.str(m, "state"), done == null ? 0 : done.intValue(),
                total == null ? 0 : total.intValue(), fraction == null ? 0 : fraction,
                seconds == null ? 0 : seconds, attempts == null ? 0 : attempts.intValue(),
                Json.str(error, "code"), Json.str(error, "message"), Json.str(m, "idempotency_key"),
                AudioFormat.fromWire(Json.str(request, "format")), m);
    }
}
