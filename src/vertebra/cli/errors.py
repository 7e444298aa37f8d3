"""The one exception type CLI code raises for problems the user can fix."""


class CliError(Exception):
    """A user-fixable problem: printed as one line, exit code ``exit_code`` (default 2)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
