"""espeak-ng host process: one pristine library, one forked child per request.

Why a zygote and not threads: libespeak-ng keeps synthesis state in process
globals, including function-level statics (pitch flutter phase, gain control,
cycle counters) that carry from one utterance into the next and that
``espeak_Terminate`` does not reset. Threads would have to serialize, and even
serialized, the same request would sound slightly different each time.
Reloading a fresh copy of the library per request fixes that but leaks the
last voice on every unload.

So this process loads and initializes libespeak-ng once and then never
synthesizes. For each request it forks: the child starts from exactly the same
state, so identical requests give identical samples; children run in
parallel on all cores; a crash in the C library kills one child, not the
server; and whatever the child allocates is returned to the system when it
exits.

Wire protocol (all integers little-endian):

* control socket (gateway <-> zygote, stream): ``u32 length + JSON``. The
  zygote first sends a hello (sample rate, version, voices). Each request is
  one message carrying a connected socket as SCM_RIGHTS ancillary data.
* per-request socket (child -> gateway): frames ``u8 kind + u32 length +
  payload``; kinds ``A`` audio (int16 mono), ``S`` segment done, ``D`` done,
  ``E`` error (JSON ``{"message"}``).

Keep this module's imports minimal: everything imported here is copied into
every child.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import sys
from typing import Any

FRAME = struct.Struct("<cI")
LENGTH = struct.Struct("<I")
AUDIO, SEGMENT_DONE, DONE, ERROR = b"A", b"S", b"D", b"E"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 0x01
_SSML = 0x10
_PHONEMES = 0x100
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def load(lib_path: str, data_path: str, buffer_ms: int) -> tuple[ctypes.CDLL, int]:
    lib = ctypes.CDLL(lib_path)
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_Info.restype = ctypes.c_char_p
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, buffer_ms, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate}) with data at {data_path}")
    return lib, rate


def list_voices(lib: ctypes.CDLL) -> list[str]:
    voices = lib.espeak_ListVoices(None)
    names: list[str] = []
    i = 0
    while voices[i]:
        names.append(voices[i].contents.name.decode("utf-8", "replace"))
        i += 1
    return names


def send_message(sock: socket.socket, obj: dict[str, Any]) -> None:
    body = json.dumps(obj).encode()
    sock.sendall(LENGTH.pack(len(body)) + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_request(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(sock, LENGTH.size, 1)
    if not head:
        return None, fds
    if len(head) < LENGTH.size:
        rest = _recv_exact(sock, LENGTH.size - len(head))
        if rest is None:
            return None, fds
        head += rest
    (n,) = LENGTH.unpack(head)
    body = _recv_exact(sock, n)
    if body is None:
        return None, fds
    return json.loads(body), fds


def synthesize(lib: ctypes.CDLL, request: dict[str, Any], out: socket.socket) -> None:
    """Child side: speak every segment, streaming frames to ``out``."""
    aborted = False

    def frame(kind: bytes, payload: bytes) -> None:
        out.sendall(FRAME.pack(kind, len(payload)) + payload)

    def on_audio(wav: Any, count: int, _events: Any) -> int:
        nonlocal aborted
        if count > 0:
            try:
                frame(AUDIO, ctypes.string_at(wav, count * 2))
            except OSError:  # the gateway went away: stop synthesizing
                aborted = True
                return 1
        return 0

    callback = _CALLBACK(on_audio)  # keep a reference while espeak may call it
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_ng_SetRandSeed(int(request.get("seed", 0)))
    params = request["params"]
    flags = _CHARS_UTF8 | _SSML | _PHONEMES | _ENDPAUSE
    current_voice = None
    for index, segment in enumerate(request["segments"]):
        if segment["voice"] != current_voice:
            if lib.espeak_SetVoiceByName(segment["voice"].encode()) != 0:
                frame(ERROR, json.dumps({"message": f"unknown voice {segment['voice']}"}).encode())
                return
            current_voice = segment["voice"]
        lib.espeak_SetParameter(_RATE, int(params["rate"]), 0)
        lib.espeak_SetParameter(_PITCH, int(params["pitch"]), 0)
        lib.espeak_SetParameter(_RANGE, int(params["range"]), 0)
        lib.espeak_SetParameter(_VOLUME, int(params["volume"]), 0)
        text = segment["ssml"].encode("utf-8")
        status = lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        lib.espeak_Synchronize()
        if aborted:
            return
        if status != 0:
            frame(ERROR, json.dumps({"message": f"espeak_Synth returned {status}"}).encode())
            return
        frame(SEGMENT_DONE, json.dumps({"segment": index}).encode())
    frame(DONE, b"{}")


def _child(lib: ctypes.CDLL, request: dict[str, Any], fd: int) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(request.get("timeout_s", 120))))
    out = socket.socket(fileno=fd)
    try:
        synthesize(lib, request, out)
    except BaseException as exc:  # report, then die: never return into the zygote loop
        payload = json.dumps({"message": repr(exc)}).encode()
        with contextlib.suppress(OSError):
            out.sendall(FRAME.pack(ERROR, len(payload)) + payload)


def serve(ctl: socket.socket, lib_path: str, data_path: str, buffer_ms: int) -> int:
    try:
        lib, rate = load(lib_path, data_path, buffer_ms)
        version = (lib.espeak_Info(None) or b"").decode()
        send_message(ctl, {"sample_rate": rate, "version": version, "voices": list_voices(lib)})
    except Exception as exc:
        send_message(ctl, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children
    while True:
        request, fds = recv_request(ctl)
        if request is None:  # the gateway is gone
            return 0
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                ctl.close()
                _child(lib, request, fds[0])
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])


def main(argv: list[str]) -> int:
    fd, lib_path, data_path, buffer_ms = int(argv[0]), argv[1], argv[2], int(argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the gateway, which closes us
    ctl = socket.socket(fileno=fd)
    return serve(ctl, lib_path, data_path, buffer_ms)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
