"""Configuration: the settings model, its fields, sources, alerts, calendar and checks."""
