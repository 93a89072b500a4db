import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sessions.models import ApiKey

logger = logging.getLogger(__name__)


def create_key(username, name, expiry):
    """Create an API key for `username`, creating the user if needed; return the key."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        logger.info("Created user %s", username)

    api_key, key = ApiKey.objects.create_key(
        user=user, name=name or f"{username} key", expiry_date=expiry
    )
    logger.info("Created API key %s for user %s", api_key.prefix, username)
    return key


class Command(BaseCommand):
    help = "Create an API key for USERNAME (creating the user if needed) and print the key alone."

    def add_arguments(self, parser):
        parser.add_argument("username", help="Django user who will own the key.")
        parser.add_argument("--name", default="", help="Label shown in the admin.")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            help="Days until the key expires (default: never).",
        )

    def handle(self, username, name, expires_in_days, **options):
        expiry = None
        if expires_in_days is not None:
            if expires_in_days < 1:
                raise CommandError(f"--expires-in-days must be at least 1, got {expires_in_days}.")
            expiry = timezone.now() + timedelta(days=expires_in_days)

        # The key alone on stdout, so scripts can capture it: KEY=$(manage.py create_api_key bob)
        self.stdout.write(create_key(username, name, expiry))
