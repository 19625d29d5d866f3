from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_FORMAT_UNSPECIFIED: _ClassVar[AudioFormat]
    AUDIO_FORMAT_WAV: _ClassVar[AudioFormat]
    AUDIO_FORMAT_MP3: _ClassVar[AudioFormat]
    AUDIO_FORMAT_OPUS: _ClassVar[AudioFormat]
    AUDIO_FORMAT_AAC: _ClassVar[AudioFormat]
    AUDIO_FORMAT_FLAC: _ClassVar[AudioFormat]
    AUDIO_FORMAT_PCM: _ClassVar[AudioFormat]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_SFT: _ClassVar[Mode]
    MODE_ZERO_SHOT: _ClassVar[Mode]
    MODE_CROSS_LINGUAL: _ClassVar[Mode]
    MODE_INSTRUCT: _ClassVar[Mode]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_REALTIME: _ClassVar[Priority]
    PRIORITY_BATCH: _ClassVar[Priority]
AUDIO_FORMAT_UNSPECIFIED: AudioFormat
AUDIO_FORMAT_WAV: AudioFormat
AUDIO_FORMAT_MP3: AudioFormat
AUDIO_FORMAT_OPUS: AudioFormat
AUDIO_FORMAT_AAC: AudioFormat
AUDIO_FORMAT_FLAC: AudioFormat
AUDIO_FORMAT_PCM: AudioFormat
MODE_UNSPECIFIED: Mode
MODE_SFT: Mode
MODE_ZERO_SHOT: Mode
MODE_CROSS_LINGUAL: Mode
MODE_INSTRUCT: Mode
PRIORITY_UNSPECIFIED: Priority
PRIORITY_REALTIME: Priority
PRIORITY_BATCH: Priority

class SynthesizeRequest(_message.Message):
    __slots__ = ("text", "voice", "engine", "model", "mode", "instruct", "language", "speed", "pitch", "volume", "format", "sample_rate", "seed", "priority", "reference_audio", "reference_text")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    PITCH_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_AUDIO_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    voice: str
    engine: str
    model: str
    mode: Mode
    instruct: str
    language: str
    speed: float
    pitch: float
    volume: float
    format: AudioFormat
    sample_rate: int
    seed: int
    priority: Priority
    reference_audio: bytes
    reference_text: str
    def __init__(self, text: _Optional[str] = ..., voice: _Optional[str] = ..., engine: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., instruct: _Optional[str] = ..., language: _Optional[str] = ..., speed: _Optional[float] = ..., pitch: _Optional[float] = ..., volume: _Optional[float] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., sample_rate: _Optional[int] = ..., seed: _Optional[int] = ..., priority: _Optional[_Union[Priority, str]] = ..., reference_audio: _Optional[bytes] = ..., reference_text: _Optional[str] = ...) -> None: ...

class AudioInfo(_message.Message):
    __slots__ = ("request_id", "format", "media_type", "sample_rate", "channels", "engine", "voice", "warnings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    format: AudioFormat
    media_type: str
    sample_rate: int
    channels: int
    engine: str
    voice: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., media_type: _Optional[str] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., engine: _Optional[str] = ..., voice: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("characters", "audio_seconds", "first_audio_ms", "total_ms", "queue_ms", "last_text_to_first_audio_ms")
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_TEXT_TO_FIRST_AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    characters: int
    audio_seconds: float
    first_audio_ms: float
    total_ms: float
    queue_ms: float
    last_text_to_first_audio_ms: float
    def __init__(self, characters: _Optional[int] = ..., audio_seconds: _Optional[float] = ..., first_audio_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., last_text_to_first_audio_ms: _Optional[float] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("info", "audio", "usage")
    INFO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    info: AudioInfo
    audio: bytes
    usage: Usage
    def __init__(self, info: _Optional[_Union[AudioInfo, _Mapping]] = ..., audio: _Optional[bytes] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class SynthesizeStreamResponse(_message.Message):
    __slots__ = ("info", "audio", "usage")
    INFO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    info: AudioInfo
    audio: bytes
    usage: Usage
    def __init__(self, info: _Optional[_Union[AudioInfo, _Mapping]] = ..., audio: _Optional[bytes] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("voice", "engine", "model", "mode", "instruct", "language", "speed", "format", "sample_rate", "priority")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    voice: str
    engine: str
    model: str
    mode: Mode
    instruct: str
    language: str
    speed: float
    format: AudioFormat
    sample_rate: int
    priority: Priority
    def __init__(self, voice: _Optional[str] = ..., engine: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[Mode, str]] = ..., instruct: _Optional[str] = ..., language: _Optional[str] = ..., speed: _Optional[float] = ..., format: _Optional[_Union[AudioFormat, str]] = ..., sample_rate: _Optional[int] = ..., priority: _Optional[_Union[Priority, str]] = ...) -> None: ...

class InputDone(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamingSynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "done")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    config: SessionConfig
    text: str
    done: InputDone
    def __init__(self, config: _Optional[_Union[SessionConfig, _Mapping]] = ..., text: _Optional[str] = ..., done: _Optional[_Union[InputDone, _Mapping]] = ...) -> None: ...

class StreamingSynthesizeResponse(_message.Message):
    __slots__ = ("info", "audio", "usage")
    INFO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    info: AudioInfo
    audio: bytes
    usage: Usage
    def __init__(self, info: _Optional[_Union[AudioInfo, _Mapping]] = ..., audio: _Optional[bytes] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ...) -> None: ...
