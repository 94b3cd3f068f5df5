"""The June 2014 incident replayed end to end on real servers (issue 18): ``bench/replay.py``.

Modules: ``scenario`` (the mail mix and the time compression, pure), ``report`` (the report
maths and its Markdown, pure), ``servers`` (the private Postfix hub and relay, Dovecot,
Prometheus, Alertmanager, the hub-relay link and the onward gateway), ``agent`` (mailwatch
itself, configured and run as a user would), ``observe`` (what Alertmanager, Prometheus and
the queues show, sampled while it plays; screenshots), ``run`` (the phases and the command).
"""
