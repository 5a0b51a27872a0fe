"""The error a data set's loader raises for a file it cannot use."""


class DataError(ValueError):
    """A data file that is damaged, truncated or not in the expected layout; the message starts
    with the file's path and says what was expected."""
