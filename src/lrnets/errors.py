"""Errors that speak to the user: what was wrong, the value given, what is allowed."""


class ConfigError(ValueError):
    """A configuration value or an input file the run cannot use; the message is one paragraph
    naming the option, the value and what is allowed. The command line prints it without a
    traceback and exits with status 2."""
