"""One error type for everything a user can get wrong; the CLI prints it as one line and exits with its code."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check or the server failed
    USAGE = 2  # bad configuration or usage
    PREFLIGHT = 3  # the node cannot run the deployment


class LlamaAscendError(Exception):
    """A failure the user can act on. The message says what happened, where, and how to fix it."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(LlamaAscendError):
    exit_code = ExitCode.USAGE


class CheckFailed(LlamaAscendError):
    exit_code = ExitCode.FAILED


class PreflightFailed(LlamaAscendError):
    exit_code = ExitCode.PREFLIGHT
