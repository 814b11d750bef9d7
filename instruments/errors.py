"""The catalog's errors."""

from core.errors import Conflict, Forbidden, Invalid, NotFound


class InstrumentNotFound(NotFound):
    def __init__(self, ref: object) -> None:
        super().__init__(f"no instrument {ref}")


class UnknownCode(Invalid):
    def __init__(self, kind: str, code: str) -> None:
        super().__init__(f"no {kind} with the code {code!r}")


class NotYourLab(Forbidden):
    def __init__(self) -> None:
        super().__init__("only a manager of the instrument's lab may change it")


class DatabaseNotEmpty(Conflict):
    def __init__(self, instruments: int, users: int) -> None:
        super().__init__(
            f"the database is not empty ({instruments} instruments, {users} users); "
            "the demo network loads only into an empty database"
        )
