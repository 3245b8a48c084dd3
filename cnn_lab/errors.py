"""The project's errors for what a user gave or lacks, at the ground floor: every layer
may import this module and it imports nothing from the project.

`InputError`: a bad argument, config value or file; its message names the argument,
what was expected and what was received (`fail` builds it). `UnavailableError`: data
this machine cannot have now (no network, not prepared); its message says what to do.
Entry points report both in one `error: ...` line (`cnn_lab.train.launch.run`); any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
  """A value the user chose is not one the code accepts (a `ValueError`, so callers that
  catch those keep working)."""


class UnavailableError(RuntimeError):
  """Data this machine cannot have now; the message says what to do."""


def fail(argument: str, expected: str, received) -> InputError:
  """The one error format: `argument: expected E, received R` (raise what it returns)."""
  return InputError(f"{argument}: expected {expected}, received {received!r}")
