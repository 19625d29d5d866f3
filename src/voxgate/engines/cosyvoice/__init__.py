"""CosyVoice engines: the model in-process (:mod:`.local`), and the official
servers as remote engines (:mod:`.http`, :mod:`.grpc`, :mod:`.triton`,
:mod:`.gradio`). :mod:`.profile` and :mod:`.texts` hold what they share."""
