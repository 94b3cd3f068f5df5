"""A trivial source kind, "static", defined outside the package to prove the registry.

Two files, as a real kind has: :mod:`.parser` (its configuration table and the parser of what
it reads) and :mod:`.source` (the adapter and its builder). ``tests/unit/test_source_registry.py``
registers it with one call; nothing in ``mailwatch/`` knows it.
"""
