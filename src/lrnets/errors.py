"""Errors that speak to the user: what was wrong, the value given, what is allowed."""


class ConfigError(ValueError):
    """A configuration value or an input file the run cannot use; the message is one paragraph
    naming the option, the value and what is allowed. The command line prints it without a
    traceback and exits with status 2."""


class RunStopped(RuntimeError):
    """Training stopped before its end (a signal, a loss that is no longer finite). ``reason``
    says what happened and which checkpoints remain, ``hint`` how to continue; the results file
    records the same. The command line prints both as one paragraph, without a traceback, and
    exits with ``exit_code``."""

    def __init__(self, reason: str, hint: str, exit_code: int):
        super().__init__(f"{reason} {hint}")
        self.reason, self.hint, self.exit_code = reason, hint, exit_code


def reason(err: BaseException) -> str:
    """``Type: first line of the message`` of an exception from a library, for a one-paragraph
    error (torch.load's messages run over many lines, or are empty)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'}"
