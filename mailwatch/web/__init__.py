"""The HTTP interface: server, API, metrics, status page and authentication."""
