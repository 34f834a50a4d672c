"""User-facing errors.

Everything that is the user's fault (a bad file, a wrong option, an impossible size) raises
:class:`MtcpError` with a message that names the file, the task and what was expected. The
command line prints the message and exits with status 2 instead of a traceback.
"""


class MtcpError(ValueError):
    """An error caused by the user's input, with a message meant to be read by the user."""
