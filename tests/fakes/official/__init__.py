"""Stand-ins for CosyVoice's official servers, backed by the stand-in model.

Each speaks its server's wire protocol byte for byte (routes, fields, framing,
status codes), so voxgate's remote engines are tested against what they will
meet. Run as processes on loopback, like the real servers:

    PYTHONPATH=tests/fakes:tests python -m fakes.official.fastapi_server \\
        --port 50000 --model_dir /tmp/CosyVoice2-0.5B

Fault knobs (``faults.Faults``) let tests make a server fail in the ways real
ones do: errors before the first byte, death mid-stream, stalls.
"""
