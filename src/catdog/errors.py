"""The one exception type users see.

Anything that is the user's to fix (a missing folder, a bad option, a run folder
without a model) raises `CatdogError` with one sentence that names the problem and,
where possible, the fix. The CLI prints it on one line and exits non-zero; it never
shows a traceback for these.
"""


class CatdogError(Exception):
    """A problem with the user's input or environment, described in one sentence."""

    exit_code = 2


class BadImageError(CatdogError):
    """A file or upload that cannot be used as an image; `reason` says why."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)
