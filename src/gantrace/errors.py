"""The project's own error types: every refusal names the file or config key and the fix."""


class GantraceError(Exception):
    """Base class for every error gantrace raises on purpose."""


class ConfigError(GantraceError):
    """A config key is missing, misspelt or out of range."""


class ImageError(GantraceError):
    """One or more input images cannot be used; `problems` lists (path, reason) pairs."""

    def __init__(self, problems, hint=""):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} input image(s) cannot be used:"]
        lines += [f"  {path}: {reason}" for path, reason in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class WeightsError(GantraceError):
    """Pretrained weights are needed but not available offline."""


class RunFileError(GantraceError):
    """A run (submission) file breaks the official rules."""
