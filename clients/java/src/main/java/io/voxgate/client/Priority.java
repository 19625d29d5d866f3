package io.voxgate.client;

import java.util.Locale;

/** Admission priority: realtime requests are served before batch work when engines are busy. */
public enum Priority {
    REALTIME, BATCH;

    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
