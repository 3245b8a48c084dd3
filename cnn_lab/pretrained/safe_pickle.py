"""A bounded pickle interpreter for files from strangers: nothing in a file is ever
imported or called, and a file gets no memory it did not bring.

`pickle.Unpickler`, even with `find_class` restricted, grows its memo to whatever
index a file names (one `LONG_BINPUT 2**26` is a gigabyte), lets `BUILD` set
attributes on allowed objects, and leaves recursion and sizes to the file. `load`
instead runs only the opcodes `torch.save` writes (`OPCODES`), iteratively, over
plain values (None, bools, ints, floats, str, bytes, tuples, lists, dicts) and what
the caller's `Hooks` make of globals, persistent ids, `REDUCE` and `BUILD`. Every
value it builds is counted against a `Budget` (`Limits.items`), every length is
checked against the bytes present before anything is read, and every refusal is a
`Refused` naming the reason and the byte offset.
"""

from __future__ import annotations

import dataclasses
import pickletools
import struct
from typing import Protocol


class Refused(Exception):
  """The file is malformed or asks for something not allowed; the message says what."""


@dataclasses.dataclass(frozen=True)
class Limits:
  """Bounds on what one checkpoint file may cost (override with `Limits(...)`).

  file_bytes: the file's size (a legacy file is read whole, storages are views of it);
  pickle_bytes: one pickle (a zip's data.pkl); items: values the pickles build, memo
  entries and names returned, together; depth: nesting of the returned containers;
  expansion: bytes of the arrays returned per byte of storage in the file (a view
  that repeats its storage, e.g. stride 0, is materialised by the copy)."""
  file_bytes: int = 8 * 2**30
  pickle_bytes: int = 64 * 2**20
  items: int = 2**19
  depth: int = 100
  expansion: int = 4


class Budget:
  """A count of built values shared by every pickle of one file."""

  def __init__(self, limit: int):
    self.left = limit

  def spend(self, n: int = 1) -> None:
    self.left -= n
    if self.left < 0:
      raise Refused("more values than Limits.items allows")


class Hooks(Protocol):
  def global_(self, module: str, name: str) -> object: ...
  def persistent(self, pid: object) -> object: ...
  def reduce(self, func: object, args: tuple) -> object: ...
  def build(self, obj: object, state: object) -> None: ...


KEY_TYPES = (str, int, float, bool, bytes, type(None))
OPCODES = {op.code.encode("latin-1"): op.name for op in pickletools.opcodes}


class _Reader:
  """Bytes of `data` from `pos`, never past its end."""

  def __init__(self, data, pos: int):
    self.data, self.pos = data, pos

  def take(self, n: int) -> bytes:
    if n < 0 or self.pos + n > len(self.data):
      raise Refused(f"a length of {n} at byte {self.pos} runs past the end of the data")
    out = bytes(self.data[self.pos:self.pos + n])
    self.pos += n
    return out

  def unpack(self, fmt: str):
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

  def line(self) -> str:
    end = bytes(self.data[self.pos:self.pos + 256]).find(b"\n")
    if end < 0:
      raise Refused(f"a name at byte {self.pos} without its end")
    try:
      return self.take(end + 1)[:-1].decode("ascii", "strict")
    except UnicodeDecodeError:
      raise Refused(f"a name that is not ASCII at byte {self.pos}") from None


class _Machine:
  def __init__(self, reader: _Reader, hooks: Hooks, budget: Budget):
    self.r, self.hooks, self.budget = reader, hooks, budget
    self.stack: list = []
    self.marks: list[int] = []
    self.memo: dict = {}

  def push(self, value) -> None:
    self.budget.spend()
    self.stack.append(value)

  def pop(self):
    if len(self.stack) <= (self.marks[-1] if self.marks else 0):
      raise Refused(f"the pickle pops an empty stack at byte {self.r.pos}")
    return self.stack.pop()

  def pop_mark(self) -> list:
    if not self.marks:
      raise Refused(f"the pickle closes a mark it never opened at byte {self.r.pos}")
    start = self.marks.pop()
    items = self.stack[start:]
    del self.stack[start:]
    return items

  def top(self, kind: type):
    if len(self.stack) <= (self.marks[-1] if self.marks else 0) or \
        not isinstance(self.stack[-1], kind):
      raise Refused(f"the pickle adds items to something not a {kind.__name__} at "
                    f"byte {self.r.pos}")
    return self.stack[-1]

  def set_items(self, target: dict, items: list) -> None:
    if len(items) % 2:
      raise Refused(f"an odd number of dict items at byte {self.r.pos}")
    for key, value in zip(items[::2], items[1::2]):
      if not isinstance(key, KEY_TYPES):
        raise Refused(f"a dict key of type {type(key).__name__} at byte {self.r.pos}")
      target[key] = value

  def memo_put(self, index: int) -> None:
    if not self.stack:
      raise Refused(f"the pickle memoizes an empty stack at byte {self.r.pos}")
    self.budget.spend()
    self.memo[index] = self.stack[-1]

  def memo_get(self, index: int) -> None:
    if index not in self.memo:
      raise Refused(f"the pickle reads memo entry {index}, never written, at byte "
                    f"{self.r.pos}")
    self.push(self.memo[index])

  def run(self):
    """Runs to STOP; returns the one value left."""
    r = self.r
    while True:
      code = r.take(1)
      name = OPCODES.get(code, f"unknown opcode {code!r}")
      if name == "STOP":
        if self.marks or len(self.stack) != 1:
          raise Refused(f"the pickle stops with {len(self.stack)} values at byte {r.pos}")
        return self.stack.pop()
      handler = _HANDLERS.get(name)
      if handler is None:
        raise Refused(f"opcode {name} at byte {r.pos - 1} is not one torch.save writes")
      handler(self)


def _text(m: _Machine, n: int) -> None:
  try:
    m.push(m.r.take(n).decode("utf-8", "surrogatepass"))
  except UnicodeDecodeError:
    raise Refused(f"a string that is not UTF-8 at byte {m.r.pos}") from None


def _tuple(m: _Machine, n: int) -> None:
  m.push(tuple([m.pop() for _ in range(n)][::-1]))


def _long(m: _Machine, n: int) -> None:
  if n > 16:
    raise Refused(f"an integer of {n} bytes at byte {m.r.pos}")
  m.push(int.from_bytes(m.r.take(n), "little", signed=True))


def _reduce(m: _Machine) -> None:
  args = m.pop()
  func = m.pop()
  if not isinstance(args, tuple):
    raise Refused(f"REDUCE with arguments that are not a tuple at byte {m.r.pos}")
  m.push(m.hooks.reduce(func, args))


def _global(m: _Machine, module: str, name: str) -> None:
  if not (isinstance(module, str) and isinstance(name, str)):
    raise Refused(f"a global named by non-strings at byte {m.r.pos}")
  m.push(m.hooks.global_(module, name))


def _build(m: _Machine) -> None:
  state = m.pop()
  m.hooks.build(m.top(object), state)


def _dict(m: _Machine) -> None:
  items = m.pop_mark()
  m.push({})
  m.set_items(m.stack[-1], items)


def _append(m: _Machine) -> None:
  value = m.pop()  # before `top`: the list is under the value
  m.top(list).append(value)


def _setitem(m: _Machine) -> None:
  value, key = m.pop(), m.pop()
  m.set_items(m.top(dict), [key, value])


def _setitems(m: _Machine) -> None:
  items = m.pop_mark()
  m.set_items(m.top(dict), items)


def _proto(m: _Machine) -> None:
  if m.r.unpack("<B") > 5:
    raise Refused("a pickle protocol above 5")


def _stack_global(m: _Machine) -> None:
  name = m.pop()
  _global(m, m.pop(), name)


_HANDLERS = {
    "PROTO": _proto,
    "FRAME": lambda m: m.r.unpack("<Q"),  # a length hint: the reader checks every take
    "MARK": lambda m: m.marks.append(len(m.stack)),
    "POP": lambda m: m.pop(),
    "POP_MARK": lambda m: m.pop_mark(),
    "DUP": lambda m: m.push(m.top(object)),
    "NONE": lambda m: m.push(None),
    "NEWTRUE": lambda m: m.push(True),
    "NEWFALSE": lambda m: m.push(False),
    "BININT": lambda m: m.push(m.r.unpack("<i")),
    "BININT1": lambda m: m.push(m.r.unpack("<B")),
    "BININT2": lambda m: m.push(m.r.unpack("<H")),
    "LONG1": lambda m: _long(m, m.r.unpack("<B")),
    "LONG4": lambda m: _long(m, m.r.unpack("<i")),
    "BINFLOAT": lambda m: m.push(m.r.unpack(">d")),
    "SHORT_BINUNICODE": lambda m: _text(m, m.r.unpack("<B")),
    "BINUNICODE": lambda m: _text(m, m.r.unpack("<I")),
    "BINUNICODE8": lambda m: _text(m, m.r.unpack("<Q")),
    "SHORT_BINBYTES": lambda m: m.push(m.r.take(m.r.unpack("<B"))),
    "BINBYTES": lambda m: m.push(m.r.take(m.r.unpack("<I"))),
    "EMPTY_DICT": lambda m: m.push({}),
    "EMPTY_LIST": lambda m: m.push([]),
    "EMPTY_TUPLE": lambda m: m.push(()),
    "TUPLE": lambda m: m.push(tuple(m.pop_mark())),
    "TUPLE1": lambda m: _tuple(m, 1),
    "TUPLE2": lambda m: _tuple(m, 2),
    "TUPLE3": lambda m: _tuple(m, 3),
    "LIST": lambda m: m.push(m.pop_mark()),
    "DICT": _dict,
    "APPEND": _append,
    "APPENDS": lambda m: (lambda items: m.top(list).extend(items))(m.pop_mark()),
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "BINPUT": lambda m: m.memo_put(m.r.unpack("<B")),
    "LONG_BINPUT": lambda m: m.memo_put(m.r.unpack("<I")),
    "MEMOIZE": lambda m: m.memo_put(len(m.memo)),
    "BINGET": lambda m: m.memo_get(m.r.unpack("<B")),
    "LONG_BINGET": lambda m: m.memo_get(m.r.unpack("<I")),
    "GLOBAL": lambda m: _global(m, m.r.line(), m.r.line()),
    "STACK_GLOBAL": _stack_global,
    "REDUCE": _reduce,
    "NEWOBJ": _reduce,
    "BUILD": _build,
    "BINPERSID": lambda m: m.push(m.hooks.persistent(m.pop())),
}


def load(data, pos: int, hooks: Hooks, budget: Budget) -> tuple[object, int]:
  """Runs the pickle that starts at `data[pos]`; -> (its value, the offset after it)."""
  machine = _Machine(_Reader(data, pos), hooks, budget)
  return machine.run(), machine.r.pos


def flatten(obj, leaf: type, limits: Limits, budget: Budget) -> dict[str, object]:
  """Nested dicts of `leaf`s -> {"a.b": leaf}; other values (ints, strings) dropped.
  Iterative; a dict inside itself, nesting past `limits.depth` and more names than
  the budget are refused."""
  out, todo = {}, [(obj, "", 0, frozenset())]
  while todo:
    node, prefix, depth, above = todo.pop()
    budget.spend()
    if isinstance(node, leaf):
      out[prefix[:-1]] = node
    elif isinstance(node, dict):
      if id(node) in above:
        raise Refused(f"a dict that contains itself (at '{prefix[:-1]}')")
      if depth >= limits.depth:
        raise Refused(f"dicts nested deeper than Limits.depth={limits.depth}")
      todo += [(value, f"{prefix}{key}.", depth + 1, above | {id(node)})
               for key, value in reversed(node.items())]
  return out
