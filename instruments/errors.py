"""The catalog's errors."""

from core.errors import Forbidden, Invalid, NotFound


class InstrumentNotFound(NotFound):
    def __init__(self, ref: object) -> None:
        super().__init__(f"no instrument {ref}")


class UnknownCode(Invalid):
    def __init__(self, kind: str, code: str) -> None:
        super().__init__(f"no {kind} with the code {code!r}")


class NotYourLab(Forbidden):
    def __init__(self) -> None:
        super().__init__("only a manager of the instrument's lab may change it")
