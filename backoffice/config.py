"""Reading configuration from environment variables.

Every setting comes from the environment with a safe default. A bad value stops start-up
with a message that names the variable, so a typo never silently becomes a default.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
ENVIRONMENTS = ("development", "production")


class ConfigError(ImproperlyConfigured):
    """A configuration variable holds a value the back-office cannot use."""

    def __init__(self, variable: str, problem: str):
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(name, f"expected one of true/false/1/0/yes/no/on/off, got {raw!r}")


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def env_choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(name, f"expected one of {', '.join(choices)}, got {raw!r}")
    return value


def env_list(env: Mapping[str, str], name: str, default: list[str]) -> list[str]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ConfigError(name, "expected a comma-separated list with at least one entry")
    return items


def env_timezone(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or "").strip() or default
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(name, f"unknown IANA timezone {raw!r} (for example Asia/Manila)") from None
    return raw


_CUTOFF = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)$")


def env_cutoff(env: Mapping[str, str], name: str, default: str) -> dt.time:
    raw = (env.get(name) or "").strip() or default
    match = _CUTOFF.match(raw)
    if not match:
        raise ConfigError(name, f"expected a 24-hour time HH:MM such as 00:00 or 17:30, got {raw!r}")
    return dt.time(int(match["h"]), int(match["m"]))


def env_database(env: Mapping[str, str], name: str) -> dict | None:
    """Parse DATABASE_URL into a Django DATABASES entry; None when unset (embedded PostgreSQL)."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ConfigError(
            name,
            "expected a PostgreSQL URL such as postgres://user:password@host:5432/dbname "
            f"(PostgreSQL is the only supported database), got scheme {parts.scheme or '(none)'!r}",
        )
    if not parts.path.strip("/"):
        raise ConfigError(name, "the URL names no database (add /dbname after the host)")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(name, "the port is not a number") from None
    import dj_database_url

    try:
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ConfigError(name, f"cannot be parsed: {exc}") from None
    config["ENGINE"] = "django.db.backends.postgresql"
    return config


def env_redis_url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(name, f"expected redis://host:6379/0 or rediss://..., got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError(name, "the URL names no host")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(name, "the port is not a number") from None
    return raw


def env_secret_key(env: Mapping[str, str], name: str, *, production: bool, fallback: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        if production:
            raise ConfigError(name, "must be set in production (at least 50 random characters)")
        return fallback
    if production and (len(raw) < 50 or len(set(raw)) < 5 or raw.startswith("django-insecure")):
        raise ConfigError(name, "is too weak for production: use at least 50 random characters")
    return raw
