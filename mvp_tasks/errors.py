"""One error base for everything the tool expects to go wrong.

Code below the task layer raises these; the task boundary (`mvp_tasks.tasks.boundary`)
turns them into one line on stderr and a non-zero exit, never a traceback.
"""


class MvpError(Exception):
    """An expected failure, with a message a person can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(MvpError):
    """A wrong key or value in invoke.yaml, an `-f` file or an INVOKE_MVP_* variable."""


class UsageError(MvpError):
    """A wrong flag or argument on the command line."""


class NotConfirmed(MvpError):
    """A destructive or protected action that was not confirmed."""


class AwsError(MvpError):
    """An AWS call failed in a way the caller cannot fix by retrying at once."""


class CredentialsError(AwsError):
    """Credentials are missing, expired or invalid."""


class EndpointError(AwsError):
    """The AWS endpoint cannot be reached."""


class StackBusy(AwsError):
    """The stack is in the middle of another operation."""


class StackFailed(AwsError):
    """A stack operation ended in a failed or rolled-back state."""


class WaitTimeout(AwsError):
    """A bounded wait ran out before the resource settled."""


class TemplateError(MvpError):
    """A CloudFormation template that cannot be read or is invalid."""


class SandboxError(MvpError):
    """The local sandbox cannot be started, reached or stopped."""


class BuildError(MvpError):
    """git, git-lfs, docker or the registry refused or failed."""


class Interrupted(MvpError):
    """The run was interrupted (Ctrl-C or SIGTERM): nothing new starts, and what is half-done is undone."""

    exit_code = 130
