"""voxgate's gRPC surface: CosyVoice's official service, for drop-in migration.

Clients built from upstream's ``cosyvoice.proto`` talk to voxgate unchanged
(:mod:`voxgate.grpc.cosyvoice_service`); :mod:`voxgate.grpc.server` runs it
next to the HTTP server when ``VOXGATE_GRPC_PORT`` is set. The same proto and
its generated stubs (:mod:`voxgate.grpc.protos`) are what the
``cosyvoice-grpc`` engine speaks to upstream's server.
"""
