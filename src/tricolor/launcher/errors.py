"""The launcher's one exception."""


class LauncherError(RuntimeError):
    """The server could not be started; the message says why and what to do."""
