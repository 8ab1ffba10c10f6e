"""The one base class of the mistakes a user can fix: a setting, a file, the dataset."""


class UserError(Exception):
    """A problem with what the user gave us; the message names it and says what to do.

    Every script prints it after "error: " and exits with status 2, without a traceback.
    """


class MissingFileError(UserError, FileNotFoundError):
    """A file the settings name does not exist; the message says where it comes from."""
