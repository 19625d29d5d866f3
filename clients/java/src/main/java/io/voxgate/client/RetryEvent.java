package io.voxgate.client;

import java.time.Duration;

/**
 * Told to the builder's {@code retryListener} before each retry: for logs
 * and metrics ("how often are we pushed back?").
 *
 * @param method     the HTTP method
 * @param path       the request path
 * @param attempt    the attempt that failed, from 1
 * @param status     the HTTP status that caused the retry (429, 503), or 0 for a connection failure
 * @param code       voxgate's error code ({@code engine_overloaded}, ...) or {@code connect_failed}
 * @param delay      how long the client waits before the next attempt
 * @param retryAfter the answer's {@code Retry-After}, or null when it had none
 */
public record RetryEvent(String method, String path, int attempt, int status, String code, Duration delay,
        Duration retryAfter) {
}
