"""The one user-error class. Entry points print its message as one line (no traceback) and exit 1;
in container mode it is also what lands in ``/opt/ml/output/failure``."""


class UserError(Exception):
    """A problem the user can fix: bad input, bad configuration, a missing file. The message says what."""
