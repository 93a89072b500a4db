"""Clone a session's repository into its workspace through the agent server's own endpoints.

The agent server may run on another host, so the clone runs there through
`/api/bash/execute_bash_command`. The agent server logs every command and its output, so the
GitHub token travels only inside a file: a GIT_ASKPASS script uploaded into a fresh 0700
directory and deleted after the clone. The clone URL carries no credentials, so `.git/config`
contains none either.
"""
import logging
import re
import shlex

from django.conf import settings

logger = logging.getLogger(__name__)

REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
CLONE_TIMEOUT_SECONDS = 600


class CloneFailed(Exception):
    """The repository could not be cloned; the message is meant for the user."""


def clone_url(repository):
    return f"{settings.GIT_BASE_URL.rstrip('/')}/{repository}.git"


def askpass_script(token):
    # git requests the username, then the password. GitHub accepts any username with a token.
    return (
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  Username*) echo x-access-token ;;\n"
        f"  *) printf '%s\\n' {shlex.quote(token)} ;;\n"
        "esac\n"
    ).encode()


async def clone_repository(client, workspace, repository, token, conversation_id):
    """Clone `repository` ("owner/name") into `workspace`/name and return the target path."""
    if not REPOSITORY_PATTERN.match(repository) or ".." in repository:
        raise CloneFailed(f"The repository name {repository!r} is invalid: expected owner/name.")

    target = f"{workspace.rstrip('/')}/{repository.split('/')[1]}"
    url = clone_url(repository)
    logger.info("Cloning %s into %s for conversation %s", url, target, conversation_id)

    # A retried start-up clones again only if the first clone did not finish.
    existing = await client.execute_bash(f"test -d {shlex.quote(target + '/.git')}", timeout=30)
    if existing.get("exit_code") == 0:
        logger.info("Repository %s is already cloned for conversation %s", repository, conversation_id)
        return target

    askpass_dir = None
    try:
        environment = "GIT_TERMINAL_PROMPT=0"
        if token:
            askpass_dir = await _make_private_dir(client)
            askpass = f"{askpass_dir}/askpass"
            # Create the file 0700 before the upload writes the token into it.
            await _run(client, f"umask 077 && : > {shlex.quote(askpass)} && chmod 700 {shlex.quote(askpass)}")
            await client.upload_file(askpass, askpass_script(token))
            environment += f" GIT_ASKPASS={shlex.quote(askpass)}"

        # An empty credential.helper keeps git from storing the token anywhere.
        command = (
            f"{environment} git -c credential.helper= clone --quiet -- "
            f"{shlex.quote(url)} {shlex.quote(target)}"
        )
        result = await client.execute_bash(command, timeout=CLONE_TIMEOUT_SECONDS)
    finally:
        if askpass_dir:
            await _remove_dir(client, askpass_dir, conversation_id)

    if result.get("exit_code") != 0:
        output = (result.get("stderr") or "") + (result.get("stdout") or "")
        raise CloneFailed(
            f"Cloning {repository} from {url} failed with exit code {result.get('exit_code')}: "
            f"{output.strip()[:1000]}"
            + (" Check the GitHub token and its access to the repository." if token else
               " A private repository needs a GitHub token.")
        )
    logger.info("Cloned %s for conversation %s", repository, conversation_id)
    return target


async def _run(client, command):
    result = await client.execute_bash(command, timeout=30)
    if result.get("exit_code") != 0:
        raise CloneFailed(
            f"Preparing the clone failed: {command!r} exited with {result.get('exit_code')}: "
            f"{(result.get('stderr') or result.get('stdout') or '').strip()[:500]}"
        )
    return (result.get("stdout") or "").strip()


async def _make_private_dir(client):
    path = await _run(client, "umask 077 && mktemp -d")
    if not path.startswith("/"):
        raise CloneFailed(f"Preparing the clone failed: mktemp returned {path!r}.")
    return path


async def _remove_dir(client, path, conversation_id):
    try:
        await _run(client, f"rm -rf -- {shlex.quote(path)}")
    except Exception:
        # The token stays in a 0700 directory that only its owner can read. Log the path only.
        logger.exception("Could not remove the askpass directory %s of conversation %s", path, conversation_id)
