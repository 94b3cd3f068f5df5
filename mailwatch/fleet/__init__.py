"""The fleet: a central PostgreSQL store every agent pushes into (an adapter, like ``store``).

``schema``: the versioned migrations (``mailwatch fleet migrate``); ``connect``: connections
and the translation of driver errors; ``writer``: applying change sets idempotently;
``reader``: the fleet's reads (``stuck --fleet``, ``fleet status``, the API), judged by
:mod:`mailwatch.core.judgement` like the local ones.
"""
