"""Errors the retrieval layer raises for callers to map onto their own responses."""


class InvalidInput(ValueError):
    """The request itself is wrong: empty text, a bad name, a bad filter (HTTP 400)."""


class NotFound(LookupError):
    """A collection, item or document that does not exist (HTTP 404)."""


class ModalityUnavailable(RuntimeError):
    """The model for a modality could not be loaded; the rest of Prism works (HTTP 503)."""
