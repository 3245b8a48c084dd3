"""Orbax checkpoints of (train state, data-iterator state), atomic, with fallback on restore.

Orbax writes each step to a temporary folder and renames it when complete, so a
run killed mid-save leaves the previous checkpoints intact. On restore, a
checkpoint that cannot be read is reported and the previous one is tried.
"""

from __future__ import annotations

import jax
import orbax.checkpoint as ocp
from absl import logging

from cnn_lab import paths


class Checkpointer:
  """`save(step, state, data_state)` / `restore(abstract_state) -> (state, data_state) | None`."""

  def __init__(self, directory: str, *, max_to_keep: int = 3):
    self.directory = paths.resolve(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data"))

  def save(self, step: int, state, data_state: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    data=ocp.args.JsonSave(data_state)),
                      force=True)
    self.manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state):
    """Newest readable checkpoint as (state, data_state, step), or None when there is none."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        return restored["state"], restored["data"], step
      except Exception as e:  # noqa: BLE001  (any unreadable file: fall back, say why)
        aside = self._set_aside(step)
        logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); moved it to %s "
                        "and trying the previous one.", step, self.directory,
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "", aside)
    return None

  def _set_aside(self, step: int) -> str:
    """Renames an unreadable step folder (kept for inspection) so the step can be saved again."""
    source = paths.join(self.directory, str(step))
    target = f"{source}.unreadable"
    suffix = 0
    while paths.exists(target):
      suffix += 1
      target = f"{source}.unreadable{suffix}"
    if jax.process_index() == 0:
      paths.rename(source, target)
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.close()


def abstract_like(state):
  """ShapeDtypeStructs with shardings, the restore target for `state`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
