"""Tables for the terminal and JSON for the record."""

from __future__ import annotations

import json
import os


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
  """A fixed-width text table; floats with 4 significant digits."""
  if not rows:
    return "(no rows)"
  columns = columns or list(rows[0])
  cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
  line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()
  return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def save_json(path: str, payload: dict) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(payload, f, indent=2)
  os.replace(path + ".tmp", path)
  return path
