"""Private, throw-away instances of real servers, for the demo and the test suite.

Nothing here is used by a production deployment: these helpers start a real Postfix (and,
later, Dovecot, Prometheus, Alertmanager) in a directory of their own, on loopback ports.
"""
