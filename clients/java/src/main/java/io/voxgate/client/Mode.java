package io.voxgate.client;

import java.util.Locale;

/** CosyVoice's inference modes, for native {@code /v1/tts} and jobs. */
public enum Mode {
    SFT, ZERO_SHOT, CROSS_LINGUAL, INSTRUCT;

    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
