"""`manage.py ensure_first_key`: create a key for user 'local' when no key exists yet."""
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from sessions.models import ApiKey


def run_command():
    stdout = io.StringIO()
    call_command("ensure_first_key", stdout=stdout, stderr=io.StringIO())
    return stdout.getvalue()


@pytest.mark.django_db
def test_first_key_created_once():
    stdout = run_command()
    again = run_command()

    api_key = ApiKey.objects.get()
    assert api_key.user.username == "local"
    assert again == ""
    key = next(word for word in stdout.split() if word.startswith(api_key.prefix + "."))
    assert ApiKey.objects.get_from_key(key) == api_key


@pytest.mark.django_db
def test_first_key_skipped_with_keys(alice):
    stdout = run_command()

    assert stdout == ""
    assert ApiKey.objects.count() == 1
    assert not get_user_model().objects.filter(username="local").exists()
