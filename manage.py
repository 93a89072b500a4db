#!/usr/bin/env python
"""Django's command-line utility for openhands-api."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openhands_api.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # An invalid environment variable: its message names the variable and the fix.
        sys.exit(f"Configuration error: {error}")


if __name__ == "__main__":
    main()
