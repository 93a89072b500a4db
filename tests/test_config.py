"""Settings read from the environment: valid values parse, invalid ones name their variable."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from openhands_api import config

PROJECT_DIR = Path(__file__).resolve().parent.parent
REDIS_SCHEMES = ("redis", "rediss", "unix")


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", "  yes  "])
def test_env_bool_true(monkeypatch, raw):
    monkeypatch.setenv("FEATURE_FLAG", raw)

    assert config.env_bool("FEATURE_FLAG") is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off"])
def test_env_bool_false(monkeypatch, raw):
    monkeypatch.setenv("FEATURE_FLAG", raw)

    assert config.env_bool("FEATURE_FLAG", default=True) is False


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_env_bool_default(monkeypatch, raw):
    monkeypatch.delenv("FEATURE_FLAG", raising=False)
    if raw is not None:
        monkeypatch.setenv("FEATURE_FLAG", raw)

    assert config.env_bool("FEATURE_FLAG", default=True) is True
    assert config.env_bool("FEATURE_FLAG", default=False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_env_bool_rejects_other(monkeypatch, raw):
    monkeypatch.setenv("FEATURE_FLAG", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        config.env_bool("FEATURE_FLAG")

    assert "FEATURE_FLAG" in str(error.value)
    assert repr(raw) in str(error.value)


def test_env_int_parses(monkeypatch):
    monkeypatch.setenv("SOME_LIMIT", " 42 ")

    assert config.env_int("SOME_LIMIT", 7) == 42


def test_env_int_default(monkeypatch):
    monkeypatch.delenv("SOME_LIMIT", raising=False)

    assert config.env_int("SOME_LIMIT", 7) == 7


@pytest.mark.parametrize(
    "raw,message",
    [("ten", "whole number"), ("1.5", "whole number"), ("0", "at least 1"), ("11", "at most 10")],
)
def test_env_int_rejects_invalid(monkeypatch, raw, message):
    monkeypatch.setenv("SOME_LIMIT", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        config.env_int("SOME_LIMIT", 5, minimum=1, maximum=10)

    assert "SOME_LIMIT" in str(error.value)
    assert message in str(error.value)


def test_env_float_parses(monkeypatch):
    monkeypatch.setenv("SOME_SECONDS", "2.5")

    assert config.env_float("SOME_SECONDS", 1.0) == 2.5


@pytest.mark.parametrize("raw", ["soon", "-1"])
def test_env_float_rejects_invalid(monkeypatch, raw):
    monkeypatch.setenv("SOME_SECONDS", raw)

    with pytest.raises(ImproperlyConfigured, match="SOME_SECONDS"):
        config.env_float("SOME_SECONDS", 1.0)


def test_env_list_splits(monkeypatch):
    monkeypatch.setenv("SOME_HOSTS", " a.example , b.example,, ")

    assert config.env_list("SOME_HOSTS") == ["a.example", "b.example"]


def test_env_list_default(monkeypatch):
    monkeypatch.setenv("SOME_HOSTS", " , ")

    assert config.env_list("SOME_HOSTS", default=["localhost"]) == ["localhost"]


@pytest.mark.parametrize(
    "raw",
    ["redis://127.0.0.1:6379/0", "rediss://user:secret@127.0.0.1:6380", "unix:///run/redis.sock"],
)
def test_env_url_accepts_valid(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)

    assert config.env_url("REDIS_URL", REDIS_SCHEMES) == raw


def test_env_url_default(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)

    assert config.env_url("REDIS_URL", REDIS_SCHEMES) == ""
    assert config.env_url("GIT_URL", ("https",), "https://github.com") == "https://github.com"


def test_env_url_accepts_file_path(monkeypatch):
    monkeypatch.setenv("GIT_URL", "file:///srv/git")

    assert config.env_url("GIT_URL", ("https", "file")) == "file:///srv/git"


@pytest.mark.parametrize(
    "raw",
    [
        "127.0.0.1:6379",
        "localhost",
        "redis://",
        "redis:/127.0.0.1",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:port/0",
        "redis://127.0.0.1:99999/0",
    ],
)
def test_env_url_rejects_malformed(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        config.env_url("REDIS_URL", REDIS_SCHEMES)

    assert "REDIS_URL" in str(error.value)
    assert "redis://" in str(error.value)


def test_env_url_list_accepts_valid(monkeypatch):
    monkeypatch.setenv("AGENT_URLS", "http://127.0.0.1:8001, https://127.0.0.1:8002")

    urls = config.env_url_list("AGENT_URLS", ("http", "https"))

    assert urls == ["http://127.0.0.1:8001", "https://127.0.0.1:8002"]


@pytest.mark.parametrize("bad_url", ["127.0.0.1:8002", "http://127.0.0.1:port", "ftp://127.0.0.1"])
def test_env_url_list_rejects_malformed(monkeypatch, bad_url):
    monkeypatch.setenv("AGENT_URLS", f"http://127.0.0.1:8001,{bad_url}")

    with pytest.raises(ImproperlyConfigured) as error:
        config.env_url_list("AGENT_URLS", ("http", "https"))

    assert "AGENT_URLS" in str(error.value)
    assert repr(bad_url) in str(error.value)


def test_database_default_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    database = config.database_config(tmp_path)

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "db.sqlite3")
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]


def test_database_postgres_url(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:secret@127.0.0.1:5432/openhands")

    database = config.database_config(tmp_path)

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["NAME"] == "openhands"
    assert database["HOST"] == "127.0.0.1"
    assert database["PORT"] == 5432
    assert "OPTIONS" not in database or "transaction_mode" not in database["OPTIONS"]


def test_database_sqlite_url_tuned(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/other.sqlite3")

    database = config.database_config(tmp_path)

    assert database["NAME"] == f"{tmp_path}/other.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@pytest.mark.parametrize(
    "raw",
    [
        "not a url",
        "mongodb://127.0.0.1/db",
        "postgres://127.0.0.1:port/db",
        "postgres://127.0.0.1:5432",
        "postgres://127.0.0.1:5432/",
    ],
)
def test_database_invalid_url(monkeypatch, tmp_path, raw):
    monkeypatch.setenv("DATABASE_URL", raw)

    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        config.database_config(tmp_path)


def test_secret_key_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "configured-secret")

    assert config.secret_key(tmp_path) == "configured-secret"
    assert not (tmp_path / "secret_key").exists()


def test_secret_key_generated_once(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)

    first = config.secret_key(tmp_path)
    second = config.secret_key(tmp_path)

    assert len(first) >= 50
    assert second == first
    assert (tmp_path / "secret_key").read_text() == first


def test_secret_key_file_private(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)

    config.secret_key(tmp_path)

    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]


def test_secret_key_creates_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    data_dir = tmp_path / "missing" / "data"

    key = config.secret_key(data_dir)

    assert (data_dir / "secret_key").read_text() == key


def test_secret_key_reads_existing(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("existing-secret\n")

    assert config.secret_key(tmp_path) == "existing-secret"


def test_secret_key_per_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)

    first = config.secret_key(tmp_path / "one")
    second = config.secret_key(tmp_path / "two")

    assert first != second


def run_manage_check(tmp_path, **variables):
    """Run `manage.py check` with the project's settings and `variables` set."""
    environment = dict(os.environ)
    environment.update(
        DJANGO_SETTINGS_MODULE="openhands_api.settings",
        OPENHANDS_API_DATA_DIR=str(tmp_path),
        OPENHANDS_API_AGENT_RUNTIME="disabled",
        **variables,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_check_passes(tmp_path):
    result = run_manage_check(tmp_path, DEBUG="false")

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_manage_check_rejects_debug(tmp_path):
    result = run_manage_check(tmp_path, DEBUG="maybe")

    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr
    assert "'maybe'" in result.stderr
