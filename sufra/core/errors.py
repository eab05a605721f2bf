"""User-facing errors: one line that names the thing and the fix (the CLI prints them without a traceback)."""


class SufraError(Exception):
    """An error caused by user input or the environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CatalogError(SufraError):
    """A data catalog file is broken: the message names the file, the dish and the field (or YAML line)."""


class StoreError(SufraError):
    """The data root cannot be read or written."""


class ModelUnavailableError(SufraError):
    """Model weights are neither cached locally nor downloadable."""
