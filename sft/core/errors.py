"""The one user-error class and the one way a user error ends a program: ``prog: error: message`` on
stderr as one line (no traceback), exit code 1. In a SageMaker training job the same message is also the
job's failure reason (sft.sagemaker.training_job)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem the user can fix: bad input, bad configuration, a missing file. The message says what."""


def report_user_error(prog: str, error: BaseException) -> None:
    """Print a user error the way every geocomply entry point does."""
    from sft.core.secrets import redact

    print(f"{prog}: error: {redact(str(error))}", file=sys.stderr)


@contextmanager
def exit_on_user_error(prog: str) -> Iterator[None]:
    """Run the body; a :class:`UserError` becomes :func:`report_user_error` and exit code 1."""
    try:
        yield
    except UserError as e:
        report_user_error(prog, e)
        raise SystemExit(1) from None
