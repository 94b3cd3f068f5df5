"""The 2014 incident replayed end to end on real servers (issue 18): one command.

    .venv/bin/python bench/replay.py                      # 30,000 messages, 60x, ~15 min
    .venv/bin/python bench/replay.py --messages 2000 --outage 150 --out /tmp/replay

Starts a private Postfix hub and relay, Dovecot, Prometheus, Alertmanager and mailwatch on
loopback, plays normal flow, the outage and the recovery, and writes
``NAME-MESSAGES.md``/``.json`` and the page's screenshots to ``--out`` (see bench/incident/).
Exit status 0 when no P1 message went unalerted and no class was falsely alerted.
"""

from __future__ import annotations

import sys

from incident.run import main

if __name__ == "__main__":
    sys.exit(main())
