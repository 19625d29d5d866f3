package io.voxgate.client;

import java.util.List;

/**
 * One page of a listing (OpenAI's list shape). Ask for the next page with
 * {@code after(lastId())} while {@link #hasMore()}.
 */
public record Page<T>(List<T> data, boolean hasMore, String firstId, String lastId) {
    public Page {
        data = List.copyOf(data);
    }
}
