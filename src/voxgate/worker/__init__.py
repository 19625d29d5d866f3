"""Engines in their own processes: the worker protocol (``protocol``), the
worker process (``server``), the gateway's side (``client``, and the
``worker`` engine kind in :mod:`voxgate.engines.worker`), the Redis registry
of workers (``registry``) and supervised, recycled children (``supervisor``)."""
