"""Settings: every variable is read from the environment; a bad value stops start-up naming it."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backoffice import config

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, env_overrides: dict[str, str], drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BUSINESS_TIMEZONE", "Mars/Olympus_Mons"),
        ("BUSINESS_DAY_CUTOFF", "25:00"),
        ("BUSINESS_DAY_CUTOFF", "midnight"),
        ("DATABASE_URL", "mysql://root@localhost/backoffice"),
        ("DATABASE_URL", "postgres://host:notaport/db"),
        ("DATABASE_URL", "postgres://host:5432"),
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("DEBUG", "maybe"),
        ("DJANGO_ENV", "staging"),
    ],
)
def test_bad_environment_value_stops_startup_naming_the_variable(variable, value):
    result = run_manage("check", env_overrides={variable: value})
    assert result.returncode != 0
    assert f"{variable}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_refuses_to_start_without_its_secrets():
    result = run_manage(
        "check",
        env_overrides={"DJANGO_ENV": "production", "DATABASE_URL": "postgres://u:p@db.example.com:5432/bo"},
        drop=("SECRET_KEY",),
    )
    assert result.returncode != 0
    assert "SECRET_KEY: must be set in production" in result.stderr


def test_production_refuses_debug():
    result = run_manage(
        "check",
        env_overrides={
            "DJANGO_ENV": "production", "DEBUG": "1", "SECRET_KEY": "x" * 30 + "abcdefghijklmnopqrstuvwxyz",
            "ALLOWED_HOSTS": "bo.example.com", "DATABASE_URL": "postgres://u:p@db.example.com/bo",
            "REDIS_URL": "redis://r.example.com:6379/0",
        },
    )  # fmt: skip
    assert result.returncode != 0
    assert "DEBUG: must be off" in result.stderr


def test_production_deploy_check_passes_at_warning_level():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    result = subprocess.run(
        ["bash", "scripts/deploy-check.sh", sys.executable],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


class TestParsers:
    def test_bool_words(self):
        assert config.env_bool({"X": "on"}, "X", False) is True
        assert config.env_bool({"X": "0"}, "X", True) is False
        assert config.env_bool({}, "X", True) is True
        with pytest.raises(config.ConfigError, match=r"^X: expected one of"):
            config.env_bool({"X": "si"}, "X", False)

    def test_cutoff(self):
        assert config.env_cutoff({}, "C", "00:00") == dt.time(0, 0)
        assert config.env_cutoff({"C": "17:30"}, "C", "00:00") == dt.time(17, 30)
        for bad in ("7:30", "24:00", "12:60", "noon"):
            with pytest.raises(config.ConfigError, match=r"^C: expected a 24-hour time"):
                config.env_cutoff({"C": bad}, "C", "00:00")

    def test_timezone(self):
        assert config.env_timezone({}, "TZ_", "Asia/Manila") == "Asia/Manila"
        with pytest.raises(config.ConfigError, match="unknown IANA timezone"):
            config.env_timezone({"TZ_": "Asia/Atlantis"}, "TZ_", "Asia/Manila")

    def test_database_url(self):
        assert config.env_database({}, "DATABASE_URL") is None
        parsed = config.env_database({"DATABASE_URL": "postgres://bo:s3cret@db:6543/backoffice"}, "DATABASE_URL")
        assert (parsed["HOST"], parsed["PORT"], parsed["NAME"], parsed["USER"]) == (
            "db",
            6543,
            "backoffice",
            "bo",
        )
        assert parsed["ENGINE"] == "django.db.backends.postgresql"
        with pytest.raises(config.ConfigError, match="PostgreSQL is the only supported database"):
            config.env_database({"DATABASE_URL": "sqlite:///db.sqlite3"}, "DATABASE_URL")

    def test_secret_key_strength_in_production(self):
        with pytest.raises(config.ConfigError, match="too weak"):
            config.env_secret_key({"SECRET_KEY": "short"}, "SECRET_KEY", production=True, fallback="")
        assert config.env_secret_key({}, "SECRET_KEY", production=False, fallback="dev") == "dev"


def test_effective_settings(settings):
    assert settings.USE_TZ is True
    assert settings.TIME_ZONE == "UTC"
    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.SESSION_COOKIE_AGE == 15 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    assert settings.AXES_FAILURE_LIMIT == 10
    assert dt.timedelta(minutes=30) == settings.AXES_COOLOFF_TIME
