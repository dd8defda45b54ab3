"""The one exception type the CLI turns into a one-line message."""


class NlbkitError(Exception):
    """A problem the user can act on: the message names the file or input and what is wrong."""
