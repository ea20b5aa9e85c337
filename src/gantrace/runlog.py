"""Send a stage's output and any traceback to its log file (Snakemake's `log:`)."""

import contextlib
import traceback
from pathlib import Path


@contextlib.contextmanager
def logged(log_path):
    """Redirect stdout/stderr to `log_path` (appended); record a traceback before re-raising.

    The project's own errors (GantraceError) are written as their message alone: they
    already name the file or key and the fix.
    """
    from gantrace.errors import GantraceError

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as fh:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                yield fh
            except GantraceError as err:
                print(f"ERROR: {err}", file=fh)
                raise
            except BaseException:
                traceback.print_exc(file=fh)
                raise
