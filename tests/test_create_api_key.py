"""`manage.py create_api_key USERNAME`: create a user's API key and print it alone."""
import datetime
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from sessions.models import ApiKey


def run_command(*args, **options):
    """Run a management command and return its stdout and stderr."""
    stdout = io.StringIO()
    stderr = io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def client_with_key(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.mark.django_db
def test_command_prints_only_key():
    stdout, stderr = run_command("create_api_key", "carol")

    key = stdout.strip()
    assert stdout == key + "\n"
    assert "\n" not in key
    assert " " not in key
    assert stderr == ""
    assert ApiKey.objects.get_from_key(key).user.username == "carol"


@pytest.mark.django_db
def test_command_creates_user():
    run_command("create_api_key", "carol")

    user = get_user_model().objects.get(username="carol")
    assert not user.has_usable_password()
    assert not user.is_staff


@pytest.mark.django_db
def test_command_reuses_user(alice):
    stdout, _ = run_command("create_api_key", "alice")

    assert ApiKey.objects.get_from_key(stdout.strip()).user == alice[0]
    assert get_user_model().objects.filter(username="alice").count() == 1
    assert ApiKey.objects.filter(user=alice[0]).count() == 2


@pytest.mark.django_db
def test_command_key_works_for_rest():
    stdout, _ = run_command("create_api_key", "carol")

    response = client_with_key(stdout.strip()).post("/sessions", {}, format="json")

    assert response.status_code == 201


@pytest.mark.django_db
def test_command_keys_isolated(alice_session):
    stdout, _ = run_command("create_api_key", "carol")

    response = client_with_key(stdout.strip()).get(f"/sessions/{alice_session}")

    assert response.status_code == 404


@pytest.mark.django_db
def test_command_stores_only_hash():
    stdout, _ = run_command("create_api_key", "carol")
    key = stdout.strip()

    api_key = ApiKey.objects.get()
    assert api_key.hashed_key != key
    assert key not in api_key.hashed_key
    assert key.partition(".")[2] not in api_key.id
    assert api_key.prefix == key.partition(".")[0]


@pytest.mark.django_db
def test_command_default_name():
    run_command("create_api_key", "carol")

    api_key = ApiKey.objects.get()
    assert api_key.name == "carol key"
    assert api_key.expiry_date is None


@pytest.mark.django_db
def test_command_sets_name():
    run_command("create_api_key", "carol", "--name", "laptop")

    assert ApiKey.objects.get().name == "laptop"


@pytest.mark.django_db
def test_command_sets_expiry():
    before = timezone.now()

    run_command("create_api_key", "carol", "--expires-in-days", "3")

    expiry = ApiKey.objects.get().expiry_date
    assert expiry >= before + datetime.timedelta(days=3)
    assert expiry <= timezone.now() + datetime.timedelta(days=3)


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "-1"])
def test_command_rejects_short_expiry(days):
    with pytest.raises(CommandError, match="--expires-in-days must be at least 1"):
        run_command("create_api_key", "carol", "--expires-in-days", days)

    assert ApiKey.objects.count() == 0
    assert not get_user_model().objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_command_requires_username():
    with pytest.raises(CommandError):
        run_command("create_api_key")
