package io.voxgate.client;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * A scripted HTTP server on a loopback port (the JDK's own
 * {@code com.sun.net.httpserver}), for what a real voxgate cannot be made to
 * do on demand: answer 503 a set number of times, stall, or cut a stream.
 * Each request takes the next scripted answer and is recorded.
 */
final class StubServer implements AutoCloseable {

    /** One scripted answer. */
    static final class Answer {
        final int status;
        final Map<String, String> headers = new LinkedHashMap<>();
        final List<byte[]> chunks = new ArrayList<>();
        long delayBeforeHeadersMs;
        long delayBetweenChunksMs;
        long declaredLength = -1;

        Answer(int status) {
            this.status = status;
        }

        static Answer of(int status) {
            return new Answer(status);
        }

        static Answer error(int status, String code, String retryAfter) {
            Answer a = new Answer(status).header("Content-Type", "application/json")
                    .header("X-Request-ID", "stub-" + code);
            if (retryAfter != null) {
                a.header("Retry-After", retryAfter);
            }
            return a.body("{\"error\": {\"code\": \"" + code + "\", \"message\": \"stub says " + code
                    + "\", \"hint\": \"stub hint\"}}");
        }

        Answer header(String name, String value) {
            headers.put(name, value);
            return this;
        }

        Answer body(String text) {
            return chunk(text.getBytes(StandardCharsets.UTF_8));
        }

        Answer chunk(byte[] data) {
            chunks.add(data);
            return this;
        }

        Answer delayHeaders(long ms) {
            delayBeforeHeadersMs = ms;
            return this;
        }

        Answer delayChunks(long ms) {
            delayBetweenChunksMs = ms;
            return this;
        }

        /**
         * Announces a {@code Content-Length} of {@code length} but sends only
         * the chunks, then closes the connection: a body cut midway.
         */
        Answer cutShortOf(long length) {
            declaredLength = length;
            return this;
        }
    }

    /** What arrived. */
    record Received(long atNanos, String method, String path, Map<String, List<String>> headers, byte[] body) {
        String header(String name) {
            for (Map.Entry<String, List<String>> e : headers.entrySet()) {
                if (e.getKey() != null && e.getKey().equalsIgnoreCase(name)) {
                    return e.getValue().get(0);
                }
            }
            return null;
        }
    }

    private final HttpServer server;
    private final ExecutorService pool = Executors.newCachedThreadPool();
    private final ConcurrentLinkedQueue<Answer> script = new ConcurrentLinkedQueue<>();
    final List<Received> received = new CopyOnWriteArrayList<>();

    StubServer() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", this::handle);
        server.setExecutor(pool);
        server.start();
    }

    StubServer then(Answer answer) {
        script.add(answer);
        return this;
    }

    String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort();
    }

    /** A client for this server with fast retries (3, 20-200 ms), reporting each retry to {@code retries}. */
    VoxgateClient.Builder client(List<RetryEvent> retries) {
        return VoxgateClient.builder().baseUrl(url()).apiKey("vg_test_key").maxRetries(3)
                .initialBackoff(Duration.ofMillis(20)).maxBackoff(Duration.ofMillis(200))
                .readTimeout(Duration.ofSeconds(20)).retryListener(retries::add);
    }

    private void handle(HttpExchange ex) throws IOException {
        byte[] body = ex.getRequestBody().readAllBytes();
        received.add(new Received(System.nanoTime(), ex.getRequestMethod(), ex.getRequestURI().toString(),
                Map.copyOf(ex.getRequestHeaders()), body));
        Answer a = script.poll();
        if (a == null) {
            a = Answer.error(500, "script_exhausted", null);
        }
        boolean cut = false;
        try {
            sleep(a.delayBeforeHeadersMs);
            a.headers.forEach((k, v) -> ex.getResponseHeaders().add(k, v));
            boolean chunked = a.chunks.size() > 1 || a.delayBetweenChunksMs > 0;
            long length = 0;
            for (byte[] c : a.chunks) {
                length += c.length;
            }
            ex.sendResponseHeaders(a.status, a.declaredLength >= 0 ? a.declaredLength
                    : chunked ? 0 : (length == 0 ? -1 : length));
            if (a.declaredLength >= 0) {
                OutputStream out = ex.getResponseBody();
                for (int i = 0; i < a.chunks.size(); i++) {
                    if (i > 0) {
                        sleep(a.delayBetweenChunksMs);
                    }
                    out.write(a.chunks.get(i));
                    out.flush();
                }
                sleep(100); // let the client take what was sent, then cut
                // Closing the short stream would leave the connection open; an
                // exception out of the handler makes the server close it.
                cut = true;
                throw new IOException("cut short on purpose");
            }
            try (OutputStream out = ex.getResponseBody()) {
                for (int i = 0; i < a.chunks.size(); i++) {
                    if (i > 0) {
                        sleep(a.delayBetweenChunksMs);
                    }
                    out.write(a.chunks.get(i));
                    out.flush();
                }
            }
        } catch (IOException e) {
            if (cut) {
                throw e;
            }
            // the client went away (a cancelled call): nothing to answer
        } finally {
            if (!cut) {
                ex.close();
            }
        }
    }

    private static void sleep(long ms) {
        if (ms > 0) {
            try {
                Thread.sleep(ms);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void close() {
        server.stop(0);
        pool.shutdownNow();
        try {
            pool.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
