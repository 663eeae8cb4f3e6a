"""Errors the engine raises; ``str(err)`` is for people."""


class EngineError(Exception):
    """Base of every error raised by ``dpl_engine``."""


class NotEnoughHistoryError(EngineError):
    pass
