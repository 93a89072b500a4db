from django.core.management.base import BaseCommand

from sessions.management.commands.create_api_key import create_key
from sessions.models import ApiKey

FIRST_USERNAME = "local"


class Command(BaseCommand):
    help = "Create and print an API key for user 'local' if no API key exists yet."

    def handle(self, **options):
        if ApiKey.objects.exists():
            return

        key = create_key(FIRST_USERNAME, name="first key", expiry=None)
        self.stdout.write(
            f"Created the first API key, for user '{FIRST_USERNAME}'. It is shown only now:\n\n"
            f"    {key}\n\n"
            "Send it as 'Authorization: Bearer <key>'. More keys: "
            "python manage.py create_api_key USERNAME"
        )
