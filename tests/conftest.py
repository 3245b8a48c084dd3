"""Test settings: float32 everywhere, a bounded hypothesis budget for a 2-core CI."""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

# One persistent XLA compilation cache per test run, empty at its start, shared by the
# test workers and every process the tests launch (they inherit the environment):
# many tests compile the same LeNet-5 and ResNet-20 programs in fresh processes. The
# CLI and workdir tests took 51 s without it, 33 s with it. The run's first process
# (the controller under xdist) makes it and removes it at the end.
OWNS_XLA_CACHE = "PYTEST_XDIST_WORKER" not in os.environ
if OWNS_XLA_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnn_lab_tests_xla_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
  if OWNS_XLA_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

from hypothesis import HealthCheck, settings

# derandomize: every run draws the same examples, so a CI result is reproducible
# (`--hypothesis-profile=explore` draws fresh ones, with more of them).
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
  """One fresh TFDS data dir per test session, shared by its xdist workers: the embedded
  datasets are built from scratch, once (their preparation lock makes sharing safe; each
  worker built its own shapes, faces and digits before)."""
  session = tmp_path_factory.getbasetemp()
  session = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session
  path = str(session / "tfds")
  os.makedirs(path, exist_ok=True)
  os.environ["CNN_LAB_DATA_DIR"] = path
  return path


# ------------------------------------------------ peak memory of each test worker
# Reported at the end of a run: the suite must fit 2 workers on a small CI machine.
import resource  # noqa: E402

MEMORY_BUDGET_GIB = 3.0
_PEAKS: list[float] = []


def _peak_gib(who: int) -> float:
  return resource.getrusage(who).ru_maxrss / 2**20  # Linux reports KiB


_RAISES: list[tuple[float, str]] = []  # (GiB the test raised the peak by, test id)


RELEASE_AFTER_GIB = 0.25  # what a test may add to resident memory before it is given back


def _resident_gib() -> float:
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
  except (OSError, ValueError, IndexError):  # not Linux: always release
    return float("inf")


def _release_memory() -> None:
  """What tests compiled and allocated, given back: JAX's compiled functions, garbage,
  and the free pages glibc keeps (without this the peaks of successive tests stack
  up). Done at the end of each module, and after a test that grew the worker by more
  than `RELEASE_AFTER_GIB` (clearing after every test would recompile what light tests
  share: the suite took 863 s that way, 778 s releasing above 1 GiB resident)."""
  import ctypes
  import gc

  import jax
  jax.clear_caches()
  gc.collect()
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):  # not glibc
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  before, resident = _peak_gib(resource.RUSAGE_SELF), _resident_gib()
  yield
  if nextitem is None or nextitem.module is not item.module or \
      _resident_gib() - resident > RELEASE_AFTER_GIB:
    _release_memory()
  raised = _peak_gib(resource.RUSAGE_SELF) - before
  if raised > 0.05:
    _RAISES.append((raised, item.nodeid))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
  output = getattr(session.config, "workeroutput", None)
  if output is not None:  # an xdist worker: hand the figures to the controller
    output["peak_rss_gib"] = _peak_gib(resource.RUSAGE_SELF)
    output["peak_raises"] = sorted(_RAISES, reverse=True)[:5]
  elif not _PEAKS:  # no workers reported: the tests ran in this process
    _PEAKS.append(_peak_gib(resource.RUSAGE_SELF))


def pytest_testnodedown(node, error):  # the xdist controller, as each worker ends
  output = getattr(node, "workeroutput", {})
  if output.get("peak_rss_gib") is not None:
    _PEAKS.append(output["peak_rss_gib"])
    _RAISES.extend(tuple(r) for r in output.get("peak_raises", ()))


def pytest_terminal_summary(terminalreporter):
  if _PEAKS:
    terminalreporter.write_line(
        f"peak memory per test worker: {', '.join(f'{p:.2f}' for p in sorted(_PEAKS))} GiB "
        f"(budget {MEMORY_BUDGET_GIB} GiB; subprocesses not included); raised most by: "
        + ", ".join(f"{test} (+{gib:.2f})" for gib, test in sorted(_RAISES, reverse=True)[:5]))


# ------------------------------------------------ the heaviest modules first
# Under xdist the tests are handed out in collection order; with the slow modules first
# (the zoo's family tests, 15-60 s each, were alphabetically last) the light tests fill
# in at the end rather than a slow one running alone. Measured: 871 s before, 868 s
# after (within this machine's run-to-run noise), so a safeguard more than a gain.
HEAVY_FIRST = ("test_zoo_train.py", "test_faces.py", "test_detection.py",
               "test_segmentation.py", "test_scale.py", "test_visualize.py", "test_style.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY_FIRST)))  # stable
