"""Typed errors. Every message names what is wrong and where; CLIs print it as one line."""


class RemacError(Exception):
    """Base class of all errors a user can cause (bad files, wrong libraries, bad options)."""


class FormatError(RemacError):
    """The .rmc bytes break docs/FORMAT.md (signature, version, field range, CRC, layout)."""


class TileError(FormatError):
    """One tile is damaged (CRC or entropy-decoding failure); other tiles may still decode."""

    def __init__(self, index, message):
        super().__init__(message)
        self.index = index


class LibraryError(RemacError):
    """A reference library is missing, damaged, or not the one a stream needs."""


class ModelError(RemacError):
    """Shipped model artifacts are missing, damaged or of another model."""
