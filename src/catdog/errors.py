"""The exceptions users see.

Anything that is the user's to fix (a missing folder, a bad option, a run folder
without a model) raises `CatdogError` with one sentence that names the problem and,
where possible, the fix. The CLI prints it on one line and exits non-zero; it never
shows a traceback for these.
"""


class CatdogError(Exception):
    """A problem with the user's input or environment, described in one sentence."""

    exit_code = 2


class ParameterError(CatdogError):
    """A bad value for one parameter, in the terms of whoever passed it.

    `message` names the parameter as `{name}`: the library fills in the Python parameter
    (`image_size`), the command line its option (`--image-size`) with `in_terms_of`.
    """

    def __init__(self, parameter: str, message: str):
        self.parameter = parameter
        self.message = message
        super().__init__(self.in_terms_of(parameter))

    def in_terms_of(self, name: str) -> str:
        return self.message.replace("{name}", name)


class BadImageError(CatdogError):
    """A file or upload that cannot be used as an image; `reason` says why."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)
