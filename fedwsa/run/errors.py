"""The config's error and its two checks (shared by ``config.py`` and ``threats.py``)."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad config value; ``str()`` is a one-line message that names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {value!r}")


def check(key: str, ok: bool, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(key, f"must be {rule}, got {value!r}")
