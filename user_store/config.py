"""Persistent settings: the chosen model, registered models and servers, method and DPL
parameters, theme.

Stored as JSON at ``locations.config_path()``. A missing file means defaults; a
broken file is reported with its path instead of being silently replaced.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from . import locations
from .errors import StoreError

_COUNTS = frozenset({"k", "m", "n", "max_description_chars"})
"""Settings that count something: at least 1 where given."""

CHOICES: dict[str, tuple[str, ...]] = {
    "method": ("none", "rag", "profile", "dpl"),
    "preset": ("dpl", "paper"),
}
"""Settings that name one of the engine's choices (its METHODS and PRESETS, which a test keeps
equal to these: the store sits below the engine and cannot import them)."""


def _problem(value: Any, hint: Any, at_least: int | None = None) -> str:
    """What ``value`` must be to fit the type ``hint`` (and ``at_least``); "" when it fits."""
    if not _fits(value, hint):
        return _describe(hint)
    if at_least is not None and value is not None and value < at_least:
        return f"at least {at_least}"
    return ""


def _fits(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is dict:
        key, item = get_args(hint)
        return isinstance(value, dict) and all(
            _fits(k, key) and _fits(v, item) for k, v in value.items()
        )
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if origin is dict:
        item = _describe(get_args(hint)[1])
        return f"an object of names to {item.removeprefix('an ').removeprefix('a ')}s"
    names = {type(None): "null", str: "a text", int: "a whole number", bool: "true or false"}
    return names.get(hint, "an object")


@dataclass
class Settings:
    model: str | None = None
    """A GGUF path or a registered model name; None means the bundled default."""
    embedder: str | None = None
    """A sentence-transformers model directory; None means the bundled default."""
    models: dict[str, str] = field(default_factory=dict)
    """Registered models: name -> GGUF path."""
    adapters: dict[str, str] = field(default_factory=dict)
    """LoRA adapters made by `dpl tune` (or added by hand): name -> adapter GGUF path."""
    adapter: str | None = None
    """The adapter applied when none is asked for (a registered name or a path); None: none."""
    servers: dict[str, dict] = field(default_factory=dict)
    """Registered LLM servers: name -> {"url", "model", "api_key_env", "concurrency", ...}.
    Only the name of the environment variable holding an API key is kept, never the key."""
    method: str = "dpl"
    k: int = 8
    m: int = 4
    n: int = 4
    preset: str = "dpl"
    """'dpl' or 'paper' (see dpl_engine.method.presets)."""
    theme: str = "textual-dark"
    prepare_ahead: bool = True
    """Compute the open user's differences in the background, before they are asked for."""
    max_description_chars: int | None = 1000
    """Item descriptions are cut to this many characters in the app's and the CLI's prompts
    (None: whole); `dpl eval` keeps them whole unless told otherwise."""

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or locations.config_path()
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StoreError(
                f"Settings file {str(path)!r} is not valid JSON ({err}). Fix or delete it."
            ) from err
        if not isinstance(data, dict):
            raise StoreError(
                f"Settings file {str(path)!r} must hold a JSON object. Fix or delete it."
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        hints = get_type_hints(cls)
        for name, value in values.items():
            problem = _problem(value, hints[name], at_least=1 if name in _COUNTS else None)
            if not problem and name in CHOICES and value not in CHOICES[name]:
                problem = "one of " + ", ".join(CHOICES[name])
            if problem:
                raise StoreError(
                    f"Settings file {str(path)!r}: {name!r} is {json.dumps(value)[:60]}; "
                    f"it must be {problem}. Fix or delete it."
                )
        return cls(**values)

    def save(self, path: Path | None = None) -> Path:
        path = path or locations.config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def resolve_model(self, choice: str | None = None) -> str | None:
        """The model to use: ``choice`` (--model), else $DPL_MODEL, else the saved setting.

        A registered name maps to its path; a registered server's name is returned as it is
        (``server`` tells them apart). None means the bundled default."""
        value = choice or os.environ.get("DPL_MODEL") or self.model
        if value is None:
            return None
        return self.models.get(value, value)

    def model_source(self, choice: str | None = None) -> str:
        """Where ``resolve_model(choice)`` took its value from, for an error about it: "" for
        --model (the person just typed it) and for the bundled default."""
        if choice:
            return ""
        if os.environ.get("DPL_MODEL"):
            return "$DPL_MODEL names it: unset it, or point it at a GGUF file or registered name."
        if self.model:
            return "It is the saved model choice: pick another in the app (Switch model)."
        return ""

    def server(self, choice: str | None) -> dict | None:
        """The registered server entry named ``choice``, if there is one."""
        return self.servers.get(choice) if choice else None
