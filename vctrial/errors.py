"""Errors a user can act on: they name the file, the key path and the reason."""

from __future__ import annotations


class SpecError(Exception):
    """A cohort, disease, protocol or patient file is wrong.

    ``str(err)`` reads ``file: key.path: reason``; the command line prints it and exits with 2.
    """

    def __init__(self, file: str, path: str, reason: str):
        self.file = str(file)
        self.path = path
        self.reason = reason
        where = f"{self.file}: {path}: " if path else f"{self.file}: "
        super().__init__(where + reason)
