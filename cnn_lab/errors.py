"""The project's errors for what a user gave or lacks, at the ground floor: every layer
may import this module and it imports nothing from the project.

`InputError`: a bad argument, config value or file; its message names the argument,
what was expected and what was received (`fail` builds it). `UnavailableError`: data
this machine cannot have now (no network, not prepared); its message says what to do.
`RunStoppedError`: a run that stopped on purpose, saying why. Entry points report
these (`USER_ERRORS`) in one `error: ...` line on stderr, exit status 1
(`cnn_lab.train.launch.run`; the traceback too with `--verbosity=1` or
`CNN_LAB_TRACEBACK=1`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
  """A value the user chose is not one the code accepts (a `ValueError`, so callers that
  catch those keep working)."""


class UnavailableError(RuntimeError):
  """Data this machine cannot have now; the message says what to do."""


class RunStoppedError(RuntimeError):
  """A run stopped for a reason its message explains, its work saved (e.g. a NaN loss,
  with the last good checkpoint named)."""


# What entry points report in one line: the user can act on the message.
USER_ERRORS = (InputError, UnavailableError, RunStoppedError)


def fail(argument: str, expected: str, received) -> InputError:
  """The one error format: `argument: expected E, received R` (raise what it returns)."""
  return InputError(f"{argument}: expected {expected}, received {received!r}")
