"""mailwatch.example.toml documents every configuration key, and only keys that exist.

The example is the users' reference. Its sections are real TOML or commented-out examples;
a commented example is a line ``# key = value`` or ``# [table]`` (exactly one space after the
``#``; indented comment lines are prose or alternatives). The test uncomments those lines,
parses the result and validates it with the configuration model, so every example in the file
is valid, then compares the keys it shows with the keys the model has, in both directions.
Source and receiver tables are compared per ``type``: a key documented for one source type
does not count for another.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from mailwatch.config.fields import SecretRef
from mailwatch.config.kinds import source_config_models
from mailwatch.config.settings import Settings, load

EXAMPLE = Path(__file__).resolve().parents[2] / "mailwatch.example.toml"
COMMENTED = re.compile(r"^# (\[\[?[a-z0-9_.]+\]\]?|[a-z_][a-z0-9_]* = .*)$")
ALTERNATIVE = re.compile(r"^#   ([a-z_][a-z0-9_]*) = ")
"""``#   key = value``: a key documented as an alternative to the example above it."""
TYPED = ("sources", "receivers")
"""Tables of named entries whose model is chosen by their ``type`` key."""


def uncommented(text: str) -> str:
    """The example with every commented example line made live."""
    return "\n".join(
        match.group(1) if (match := COMMENTED.match(line)) else line for line in text.splitlines()
    )


def alternatives(text: str) -> dict[str, set[str]]:
    """Alternative keys documented per table (``sources.ppcs_inbox`` → ``{"token"}``)."""
    table, found = "", dict[str, set[str]]()
    for line in text.splitlines():
        if (match := COMMENTED.match(line)) and match.group(1).startswith("["):
            table = match.group(1).strip("[]")
        elif match := ALTERNATIVE.match(line):
            found.setdefault(table, set()).add(match.group(1))
    return found


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, Annotated)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _type_of(model: type[BaseModel]) -> str:
    return str(get_args(model.model_fields["type"].annotation)[0])


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path of ``model``: ``*`` for entries of a table or list, ``<type>`` per kind."""
    keys: set[str] = set()
    hints = typing.get_type_hints(model, include_extras=True)
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        keys.add(path)
        annotation = hints[name]
        origin = get_origin(annotation)
        args = get_args(annotation)
        if origin is typing.Annotated:
            annotation, origin, args = args[0], get_origin(args[0]), get_args(args[0])
        if origin in (Union, types.UnionType):  # Optional[...]
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1:
                annotation, origin, args = inner[0], get_origin(inner[0]), get_args(inner[0])
        if origin is dict:
            subs = source_config_models() if name == "sources" else _models(args[1])
            for sub in subs:
                label = f"<{_type_of(sub)}>" if name in TYPED else "*"
                keys |= model_keys(sub, f"{path}.{label}.")
        elif origin is list:
            for sub in _models(args[0]):
                keys |= model_keys(sub, f"{path}.*.")
        else:
            for sub in _models(annotation):
                if sub is not SecretRef:  # { env = "..." } or { file = "..." }: a value
                    keys |= model_keys(sub, f"{path}.")
    return keys


def example_keys(
    data: dict[str, Any], prefix: str = "", extra: dict[str, set[str]] | None = None
) -> set[str]:
    """Every key path the parsed example shows, labelled as :func:`model_keys` labels them.

    ``extra``: alternative keys per table name (:func:`alternatives`), counted as shown.
    """
    keys: set[str] = set()
    for name, value in data.items():
        path = f"{prefix}{name}"
        keys.add(path)
        if prefix == "" and name in TYPED:
            for entry_name, entry in value.items():
                label = f"{path}.<{entry['type']}>."
                keys |= example_keys(entry, label)
                keys |= {label + key for key in (extra or {}).get(f"{name}.{entry_name}", ())}
        elif prefix == "" and name == "classes":
            for entry in value.values():
                keys |= example_keys(entry, f"{path}.*.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                keys |= example_keys(entry, f"{path}.*.")
        elif isinstance(value, dict) and set(value) - {"env", "file"}:
            keys |= example_keys(value, f"{path}.")
    return keys


def parsed_example() -> dict[str, Any]:
    """The example with its commented examples live, as TOML data."""
    return tomllib.loads(uncommented(EXAMPLE.read_text(encoding="utf-8")))


def documented() -> set[str]:
    """Every key path the example documents, alternatives included."""
    extra = alternatives(EXAMPLE.read_text(encoding="utf-8"))
    return example_keys(parsed_example(), extra=extra)


def test_the_file_as_shipped_is_valid() -> None:
    """The example, as shipped (examples still commented), loads."""
    load(EXAMPLE)


def test_every_example_is_valid(tmp_path: Path) -> None:
    """With every commented example made live, the file still loads (no stale examples)."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(uncommented(EXAMPLE.read_text(encoding="utf-8")), encoding="utf-8")
    settings = load(path)
    assert settings.sources, "the example shows sources"
    assert settings.receivers, "the example shows receivers"


def test_every_model_key_is_documented() -> None:
    """Each key of the configuration model appears in the example."""
    missing = model_keys(Settings) - documented()
    assert not missing, f"document these keys in mailwatch.example.toml: {sorted(missing)}"


def test_every_documented_key_exists() -> None:
    """The example shows no key the model does not have."""
    unknown = documented() - model_keys(Settings)
    assert not unknown, f"mailwatch.example.toml shows unknown keys: {sorted(unknown)}"


def test_the_comparison_sees_a_missing_key() -> None:
    """Removing one documented key is noticed (the comparison can fail)."""
    data = parsed_example()
    del data["store"]["retention"]
    assert "store.retention" in model_keys(Settings) - example_keys(data)
