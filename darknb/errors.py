"""darknb's own exception types: one family, so callers can catch ``DarknbError``."""


class DarknbError(Exception):
    """Base class of every error darknb raises on purpose."""


class ConfigError(DarknbError, ValueError):
    """A parameter is unknown, mistyped or out of range; the message names it."""


class VideoReadError(DarknbError):
    """A video could not be read; the message names the file and the cause."""


class DatasetError(DarknbError):
    """A dataset root, list file or list entry is wrong; the message names it."""


class CacheError(DarknbError):
    """A frame cache file is damaged, truncated or older than its source video; the message names
    the file (and video) and the command that re-decodes it. Never a counted skip: the cache is
    repaired, not the data changed."""


class CheckpointError(DarknbError):
    """A checkpoint is missing, truncated, corrupt or does not fit the model."""


class TrainingError(DarknbError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class OutputError(DarknbError, OSError):
    """A file could not be written (full disk, permissions); the message names it and the cause."""


class RunLockedError(DarknbError):
    """A run folder is being written by another darknb process; the message names its pid and command."""


class NotebookError(DarknbError):
    """A notebook failed under ``python -m darknb run``; the message is darknb's one line, the
    failed notebook and the log holding the full traceback."""
