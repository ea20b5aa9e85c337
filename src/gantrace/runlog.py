"""Progress lines and the job log: `say` writes a line, `logged` sends a stage's output and
any traceback to its log file (Snakemake's `log:`)."""

import contextlib
import sys
import traceback
from pathlib import Path

from gantrace.errors import GantraceError


def say(msg, log=None):
    """Write `msg` as one line to the open text file `log` and flush it; no `log`, no output.

    Library calls take `log=None` and stay quiet unless given one; stages pass `sys.stdout`,
    which `logged` sends to the job's log.
    """
    if log is None:
        return
    log.write(f"{msg}\n")
    if hasattr(log, "flush"):
        log.flush()


def to_console(msg):
    """Write `msg` as one line to the job's own stderr, past `logged`'s redirection: what
    the person at the console must see (Snakemake shows a job's stderr), besides the log."""
    print(msg, file=sys.__stderr__, flush=True)


@contextlib.contextmanager
def logged(log_path):
    """Redirect stdout/stderr to `log_path` (appended); record a traceback before re-raising.

    The project's own errors (GantraceError) are written as their message alone: they
    already name the file or key and the fix; the job then exits with status 1, without a
    traceback.
    """

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as fh:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                yield fh
            except GantraceError as err:
                # a config or data problem: its message, in the log (which the profiles'
                # show-failed-logs prints), and no traceback on the console
                print(f"ERROR: {err}", file=fh)
                raise SystemExit(1) from None
            except BaseException:
                traceback.print_exc(file=fh)
                raise
