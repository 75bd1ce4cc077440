"""The one exception type a user can cause. The command line prints its message (one sentence
that says what to do) and exits with status 2, instead of a traceback."""


class RosettaError(Exception):
    """A problem with the user's input: a corpus, a flag, a config value or a checkpoint."""


class ConfigError(RosettaError, ValueError):
    """A config value or command-line option that is out of range or unknown."""


class CorpusError(RosettaError):
    """A corpus that cannot be found, fetched, decoded or cut into one batch."""


class CheckpointError(RosettaError, ValueError):
    """A checkpoint that does not fit: missing or extra tensor, wrong shape, dtype or vocabulary."""
