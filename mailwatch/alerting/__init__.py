"""Alerting: rules and conditions, the alert lifecycle (pure), and notification intents.

Delivery to receivers (Alertmanager, webhook, email) and the outbox live in
``mailwatch.notify``; persistence of alert state in the store.
"""
