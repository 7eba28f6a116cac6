"""The error type for bad input and refused operations, shown to users without a traceback."""


class RetailrecError(ValueError):
    """A user-facing error whose message names the file, the column and the value at fault."""
