package io.voxgate.client;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The answer of {@code GET /healthz} or {@code GET /readyz}.
 *
 * @param ok      healthz: the process answers; readyz: every engine is ready (HTTP 200, not 503)
 * @param status  the body's {@code status}: {@code ok}, {@code ready}, {@code not_ready}
 * @param engines readyz: each engine's readiness; empty for healthz
 * @param raw     the whole body
 */
public record Health(boolean ok, String status, Map<String, Boolean> engines, Map<String, Object> raw) {
    public Health {
        engines = engines == null ? Map.of() : Collections.unmodifiableMap(engines);
        raw = raw == null ? Map.of() : Collections.unmodifiableMap(raw);
    }

    static Health of(int httpStatus, Map<String, Object> body) {
        Map<String, Boolean> engines = new LinkedHashMap<>();
        Map<String, Object> e = Json.obj(body, "engines");
        if (e != null) {
            e.forEach((name, ready) -> engines.put(name, Boolean.TRUE.equals(ready)));
        }
        return new Health(httpStatus == 200, Json.str(body, "status"), engines, body);
    }
}
