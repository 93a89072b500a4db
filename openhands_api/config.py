"""Read settings from the environment, failing loudly on invalid values.

Every helper raises ImproperlyConfigured naming the variable, so a typo stops start-up with a
message an operator can act on instead of silently falling back to a default.
"""
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured  # noqa: F401  (re-exported)

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off"}


def env_str(name, default=""):
    return os.environ.get(name, default).strip()


def env_bool(name, default=False):
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_VALUES:
        return True
    if raw in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(
        f"{name} must be a boolean (one of {sorted(TRUE_VALUES | FALSE_VALUES)}), got {raw!r}."
    )


def env_int(name, default, minimum=None, maximum=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}.")
    return value


def env_float(name, default, minimum=0.0):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}.")
    return value


def env_list(name, default=()):
    raw = os.environ.get(name, "")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return items or list(default)


# Schemes whose URLs name a filesystem path instead of a host, such as unix:///run/redis.sock.
PATH_SCHEMES = {"file", "unix"}


def is_valid_url(raw, schemes):
    """Return whether `raw` has one of `schemes`, a host (or a path) and a numeric port if any."""
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        return False
    if parts.scheme in PATH_SCHEMES:
        has_location = bool(parts.netloc) or bool(parts.path)
    else:
        has_location = bool(parts.netloc)
    try:
        # Raises ValueError for a port that is not a number from 0 to 65535.
        parts.port
    except ValueError:
        return False
    return has_location


def env_url(name, schemes, default=""):
    """Return the URL in `name`, or `default`; reject a malformed URL or an unexpected scheme."""
    raw = env_str(name, default)
    if not raw:
        return raw
    if not is_valid_url(raw, schemes):
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}, "
            f"got {raw!r}."
        )
    return raw


def env_url_list(name, schemes):
    for item in env_list(name):
        if not is_valid_url(item, schemes):
            raise ImproperlyConfigured(
                f"{name} must be a comma-separated list of URLs starting with one of "
                f"{', '.join(s + '://' for s in schemes)}, got {item!r}."
            )
    return env_list(name)


def database_config(data_dir):
    """Parse DATABASE_URL, defaulting to a SQLite file tuned for concurrent writers."""
    raw = env_str("DATABASE_URL")
    if not raw:
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(data_dir / "db.sqlite3")}
    else:
        try:
            config = dj_database_url.parse(raw, conn_max_age=0)
        except ValueError as error:
            raise ImproperlyConfigured(f"DATABASE_URL is invalid: {error}") from None
        if not config.get("NAME") and config["ENGINE"] != "django.db.backends.sqlite3":
            raise ImproperlyConfigured(f"DATABASE_URL names no database: {raw!r}.")

    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside a writer; IMMEDIATE takes the write lock at BEGIN, so a
        # second writer waits for the busy timeout instead of failing with "database is locked"
        # when it upgrades a read lock half-way through a transaction.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


def secret_key(data_dir):
    """Return SECRET_KEY, or a key generated once into the data dir and reused afterwards."""
    configured = env_str("SECRET_KEY")
    if configured:
        return configured
    return read_or_create_secret(data_dir / "secret_key")


def read_or_create_secret(path: Path, nbytes=48):
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass

    value = secrets.token_urlsafe(nbytes)

    # Write a private temporary file, then hard-link it into place: the link either appears
    # complete or fails because another process won, and the loser then reads the winner's key.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        os.link(temporary, path)
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        temporary.unlink()
    return value
