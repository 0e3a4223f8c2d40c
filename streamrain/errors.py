"""Exceptions the library raises; the CLI turns each into one line and a non-zero exit."""


class StreamrainError(Exception):
    """Base class: a failure with a message meant for the user."""


class InputError(StreamrainError):
    """The input cannot be opened, has no video, or nothing in it decodes."""


class OutputError(StreamrainError):
    """The output cannot be written."""


class ModelError(StreamrainError):
    """A model name, weight file or device is unusable."""


class ConfigError(StreamrainError):
    """An option or preset value is invalid."""


class PipelineError(StreamrainError):
    """A pipeline stage failed; the message names the stage and the cause."""
