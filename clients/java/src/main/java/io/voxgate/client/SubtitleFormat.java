package io.voxgate.client;

/** Subtitle files a finished job offers. */
public enum SubtitleFormat {
    SRT("srt"), VTT("vtt");

    private final String extension;

    SubtitleFormat(String extension) {
        this.extension = extension;
    }

    public String extension() {
        return extension;
    }
}
