"""Errors a user can act on: each message names the cause and the fix.

The CLI prints these without a traceback and exits with status 2; anything else is a bug.
"""


class SeqvisionError(Exception):
    """Base class for every error caused by input the user can correct."""


class ConfigError(SeqvisionError):
    """A training or evaluation option is out of range or unknown."""


class DatasetError(SeqvisionError):
    """Dataset files are missing, corrupt, or cannot be downloaded."""


class RunFolderError(SeqvisionError):
    """A path given as a run folder is not one, or is incomplete."""


class InputShapeError(SeqvisionError, ValueError):
    """A model received a batch whose shape differs from the images it was built for."""


class TrainingDivergedError(SeqvisionError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterruptedError(SeqvisionError):
    """Training was stopped by Ctrl-C after saving a resumable checkpoint."""


class CheckpointError(RunFolderError):
    """A file given as a checkpoint is not one that seqvision wrote, or is damaged."""


class RunLockedError(RunFolderError):
    """Another process is training in the run folder."""


class DiskFullError(SeqvisionError, OSError):
    """A file could not be written because its disk is full; the files written before it are intact."""


class BundleError(SeqvisionError):
    """A folder given as a model bundle is not one, is damaged, or was written by a newer version."""


class ImageError(SeqvisionError, ValueError):
    """A picture given to predict or to the server cannot be read, is too large, or has the wrong shape."""


class BlankImageError(ImageError):
    """A picture holds no ink (no digit) to classify; reported as such rather than guessed."""


class PeerLostError(SeqvisionError):
    """Another process of a distributed run died or stopped answering; the run is incomplete but resumable."""


class StudyStorageError(SeqvisionError):
    """The storage of a hyper-parameter study (an Optuna database URL) cannot be opened or holds another study."""


class SeqvisionWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one line."""
