"""Per-message actions on a Postfix queue: retry, hold, release, flush (an adapter).

Every action names a message mailwatch knows (looked up in the store, so a typo cannot hold
someone else's mail), runs one Postfix command under a timeout (in its own process group,
killed as a group on timeout), and is written to the audit trail with who, when, what and the
result, whether it worked or not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailwatch.config.settings import Settings
from mailwatch.config.sources import PostfixSourceConfig
from mailwatch.errors import ActionFailed, UnknownMessage
from mailwatch.sources import process
from mailwatch.store import Store

OUTPUT_LIMIT = 4096
"""Bytes of a command's stderr kept (the rest is read and dropped)."""


class Action(enum.StrEnum):
    """What can be done to queued mail."""

    RETRY = "retry"
    HOLD = "hold"
    RELEASE = "release"
    FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened."""

    action: Action
    target: str
    ok: bool
    output: str


def _argv(action: Action, config: PostfixSourceConfig, queue_id: str | None) -> list[str]:
    conf = ["-c", str(config.config_dir)] if config.config_dir else []
    postsuper = (
        str(Path(config.postqueue).with_name("postsuper"))
        if "/" in config.postqueue
        else "postsuper"
    )
    if action is Action.RETRY:
        return [config.postqueue, *conf, "-i", str(queue_id)]
    if action is Action.HOLD:
        return [postsuper, *conf, "-h", str(queue_id)]
    if action is Action.RELEASE:
        return [postsuper, *conf, "-H", str(queue_id)]
    return [config.postqueue, *conf, "-f"]


async def _run(argv: list[str], command_timeout: float) -> tuple[int, str]:
    """Run one Postfix command in its own process group, every wait bounded.

    On timeout (or cancellation) the whole group is killed and the pipes are closed without
    waiting for EOF: a child the command forked that keeps its output open cannot hang the
    action (see :mod:`mailwatch.sources.process`).
    """
    try:
        code, out, err = await process.run(argv, command_timeout, stderr_limit=OUTPUT_LIMIT)
    except TimeoutError as exc:
        raise ActionFailed(f"{argv[0]} took longer than {command_timeout:g}s") from exc
    except OSError as exc:
        raise ActionFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    text = "\n".join(part.decode("utf-8", "replace").strip() for part in (out, err))
    return code, text.strip()


async def perform(
    settings: Settings,
    store: Store,
    action: Action,
    *,
    ident: str | None,
    source: str | None,
    actor: str,
    now: datetime,
    command_timeout: float = 30.0,
    on_behalf_of: str | None = None,
) -> ActionResult:
    """Do ``action`` to the tracked message ``ident`` (or flush ``source``), audited.

    ``actor`` is who proved who they are (token or login name), ``on_behalf_of`` a name they
    gave: the audit trail keeps both, apart.
    """
    if action is Action.FLUSH:
        names = [source] if source else [n for n, c in settings.sources.items()
                                         if isinstance(c, PostfixSourceConfig)]  # fmt: skip
        target, queue_id = f"source {','.join(names)}", None
    else:
        if ident is None:
            raise UnknownMessage(f"{action.value} needs a message id")
        message = store.get(ident)  # raises UnknownMessage for an id mailwatch does not know
        names, target, queue_id = [message.source], f"message {message.key}", message.queue_id
    outputs, ok = [], True
    for name in names:
        config = settings.sources.get(name)
        if not isinstance(config, PostfixSourceConfig):
            raise ActionFailed(f"source {name!r} is not a configured Postfix source")
        try:
            code, output = await _run(_argv(action, config, queue_id), command_timeout)
        except ActionFailed as exc:  # timed out or could not start: audited as failed too
            code, output = -1, str(exc)
        ok = ok and code == 0
        outputs.append(output or ("done" if code == 0 else f"exit {code}"))
    result = ActionResult(action, target, ok, "; ".join(outputs))
    store.audit(now, actor, action.value, target, ("ok: " if ok else "FAILED: ") + result.output,
                on_behalf_of=on_behalf_of)  # fmt: skip
    if not ok:
        raise ActionFailed(f"{action.value} {target} failed: {result.output}")
    return result
