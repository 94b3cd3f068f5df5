"""Orchestration: wires the core to the adapters (scanner, service, runner, actions, queries)."""
