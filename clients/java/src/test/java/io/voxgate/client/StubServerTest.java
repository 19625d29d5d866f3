package io.voxgate.client;

import java.io.IOException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/**
 * Tests against a fresh scripted {@link StubServer} each: the server, the
 * retries the client reported, and a client with fast retries.
 */
abstract class StubServerTest {
    protected StubServer stub;
    protected final List<RetryEvent> retries = new CopyOnWriteArrayList<>();

    @BeforeEach
    void startStub() throws IOException {
        stub = new StubServer();
    }

    @AfterEach
    void stopStub() {
        stub.close();
    }

    /** A client for the stub with fast retries (3, 20-200 ms), each reported to {@link #retries}. */
    protected VoxgateClient.Builder client() {
        return stub.client(retries);
    }
}
