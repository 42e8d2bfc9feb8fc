"""Errors a user can cause (bad option, bad file, bad field).

The CLI turns :class:`UserInputError` into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserInputError(ValueError):
    """A value supplied by the user is invalid; the message names what (option, file, field) and why."""
