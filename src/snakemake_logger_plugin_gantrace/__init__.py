"""gantrace's console for Snakemake runs: one short line per finished job, errors in full.

The default profile selects it (`logger: [gantrace]`); Snakemake finds it by its module name.
A run prints its job counts on one line, then `[ 12/135] embed demo_membership lbp full 3
(4 s)` per finished job; no job banners with their input lists, no `Shell command: None`.
A failed job keeps Snakemake's full error block (rule, log path, the log itself with
`show-failed-logs`). Dry runs, `--verbose` and `--debug-dag` keep Snakemake's own output:
there the job banners are what was asked for.
"""

import logging
import re
import sys
import time

from snakemake.logging import ColorizingTextHandler, DefaultFilter, DefaultFormatter
from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

# Scheduler chatter a user has nothing to do with (one or two lines per scheduling round).
NOISE = re.compile(
    r"^(Select jobs to execute\.\.\.|Execute \d+ jobs\.\.\.|Using shell: .*"
    r"|Assuming unrestricted shared filesystem usage\.|Conda environments: ignored"
    r"|Rules claiming more threads will be "
    r"scaled down\.|Provided resources: .*|Provided cores: .*|Building DAG of jobs\.\.\.)$"
)


def job_label(rule, wildcards):
    """`rule value value ...`: a job named by its rule and its wildcards' values."""
    values = wildcards.values() if hasattr(wildcards, "values") else (wildcards or [])
    return " ".join([rule, *(str(v) for v in values)])


def job_counts(stats):
    """`135 jobs: simulate_x 1, ingest 8, ...` from Snakemake's job-stats mapping."""
    counts = {k: v for k, v in stats.items() if k != "total"}
    total = stats.get("total", sum(counts.values()))
    return f"{total} jobs to run: " + ", ".join(f"{k} {v}" for k, v in counts.items())


class LogHandler(LogHandlerBase, ColorizingTextHandler):
    def __post_init__(self):
        s = self.common_settings
        ColorizingTextHandler.__init__(
            self, nocolor=s.nocolor, stream=sys.stdout if s.stdout else sys.stderr
        )
        self.addFilter(DefaultFilter(s.quiet, s.debug_dag, s.verbose, s.dryrun, s.printshellcmds))
        self.default = DefaultFormatter(s.quiet, s.show_failed_logs)
        self.setFormatter(self.default)
        self.compact = not (s.dryrun or s.verbose or s.debug_dag)
        self.started = {}  # jobid -> (label, start time)
        self.finished = []  # labels of finished jobs not yet counted by a PROGRESS event

    def emit(self, record):
        if not self.compact and getattr(record, "event", None) == LogEvent.JOB_INFO:
            # Snakemake's own layout: a blank line before every job banner (its handler
            # skips it after another banner, which only the filtered shell lines broke up)
            self.last_msg_was_job_info = False
        if self.compact:
            text = self.compact_text(record)
            if text is None:
                return
            if text is not True:  # a copy: other handlers may read the same record
                record = logging.makeLogRecord({**record.__dict__, "msg": text, "args": ()})
                record.event = None
        ColorizingTextHandler.emit(self, record)

    def compact_text(self, record):
        """The line to print instead, True for Snakemake's own text, None for nothing."""
        event = getattr(record, "event", None)
        if event == LogEvent.WORKFLOW_STARTED:
            files = ", ".join(str(f) for f in record.configfiles) or "none"
            return f"Snakemake {record.snakemake_version}, config: {files}"
        if event == LogEvent.JOB_INFO:
            label = job_label(record.rule_name, record.wildcards)
            self.started[record.jobid] = (label, time.monotonic())
            return None
        if event in (LogEvent.SHELLCMD, LogEvent.JOB_STARTED, LogEvent.RESOURCES_INFO):
            return None
        if event == LogEvent.JOB_FINISHED:
            label, t0 = self.started.pop(record.job_id, (f"job {record.job_id}", None))
            took = "" if t0 is None else f"  ({time.monotonic() - t0:.0f} s)"
            self.finished.append(label + took)
            return None
        if event == LogEvent.PROGRESS:
            done, total = record.done, record.total
            lines, first = [], done - len(self.finished) + 1
            for i, label in enumerate(self.finished):
                lines.append(f"[{first + i:>{len(str(total))}}/{total}] {label}")
            self.finished = []
            return "\n".join(lines) or None
        if event == LogEvent.RUN_INFO and isinstance(getattr(record, "stats", None), dict):
            return job_counts(record.stats)
        if event is None and isinstance(record.msg, str) and NOISE.match(record.msg.strip()):
            return None
        return True

    @property
    def writes_to_stream(self):
        return True

    @property
    def writes_to_file(self):
        return False

    @property
    def has_filter(self):
        return True

    @property
    def has_formatter(self):
        return True

    @property
    def needs_rulegraph(self):
        return False
