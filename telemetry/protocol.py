"""The MQTT wire protocol: topics and payloads gateways send, parsed and validated."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from telemetry.models import EventType, InstrumentLiveState

TOPIC_ROOT = "labshare/v1/gateways"
SHARED_GROUP = "labshare-ingest"
EVENTS_FILTER = f"{TOPIC_ROOT}/+/instruments/+/events"
PRESENCE_FILTER = f"{TOPIC_ROOT}/+/status"

MAX_PAYLOAD_BYTES = 16 * 1024
# How far a message's time may lie from when we receive it: gateways buffer while
# offline (so the past is generous), but a clock far ahead is a broken clock.
MAX_AGE = timedelta(days=30)
MAX_FUTURE = timedelta(minutes=5)

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ProtocolError(ValueError):
    """A message we cannot accept; its text is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class EventTopic:
    gateway_uid: str
    instrument_code: str


@dataclass(frozen=True, slots=True)
class PresenceTopic:
    gateway_uid: str


def events_topic(gateway_uid: str, instrument_code: str, root: str = TOPIC_ROOT) -> str:
    """The topic a gateway publishes an instrument's events on."""
    return f"{root}/{gateway_uid}/instruments/{instrument_code}/events"


def presence_topic(gateway_uid: str, root: str = TOPIC_ROOT) -> str:
    """The retained topic carrying a gateway's `online`/`offline` (its last will)."""
    return f"{root}/{gateway_uid}/status"


def parse_topic(topic: str, root: str = TOPIC_ROOT) -> EventTopic | PresenceTopic:
    """Which gateway and instrument a topic names; ProtocolError if it is not ours."""
    prefix = root + "/"
    if topic.startswith(prefix):
        parts = topic[len(prefix) :].split("/")
        if len(parts) == 4 and parts[1] == "instruments" and parts[3] == "events":
            if _SEGMENT.match(parts[0]) and _SEGMENT.match(parts[2]):
                return EventTopic(parts[0], parts[2])
        elif len(parts) == 2 and parts[1] == "status" and _SEGMENT.match(parts[0]):
            return PresenceTopic(parts[0])
    raise ProtocolError("topic: not a labshare v1 events or status topic")


class MeterData(BaseModel):
    """Meter readings since the previous meter message (increments, not totals)."""

    model_config = ConfigDict(extra="allow")

    samples: int = Field(default=0, ge=0, le=1_000_000)
    kwh: float = Field(default=0.0, ge=0, le=1_000_000, allow_inf_nan=False)


class Message(BaseModel):
    """One event payload: `{"id", "ts", "type", "user"?, "data"?}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128, strict=True)
    ts: datetime
    type: EventType
    user: str | None = Field(default=None, min_length=1, max_length=64, strict=True)
    data: dict[str, Any] | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # Pydantic would also take numbers; the contract says an RFC 3339 string with an offset.
        if not isinstance(value, str):
            raise ValueError("ts must be an RFC 3339 string")
        return value

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("ts needs a UTC offset")
        return value.astimezone(UTC)

    @field_validator("id", "user")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # What PostgreSQL's jsonb cannot hold must be refused here, not fail a whole batch.
        if value is not None:
            text = json.dumps(value, allow_nan=False)
            if "\\u0000" in text:
                raise ValueError("must not contain NUL characters")
        return value

    @model_validator(mode="after")
    def _data_by_type(self) -> Message:
        data = self.data or {}
        if self.type == EventType.status:
            state = data.get("state")
            if state not in InstrumentLiveState.__members__:
                raise ValueError("status needs data.state: idle, in_use, fault or offline")
        elif self.type == EventType.meter:
            MeterData.model_validate(data)
        return self

    @property
    def state(self) -> InstrumentLiveState | None:
        """The reported state of a `status` message."""
        if self.type != EventType.status or not self.data:
            return None
        return InstrumentLiveState(self.data["state"])

    @property
    def meter(self) -> MeterData:
        """The readings of a `meter` message (zeros otherwise)."""
        if self.type != EventType.meter or not self.data:
            return MeterData()
        return MeterData.model_validate(self.data)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "payload"
    return f"{where}: {err['msg']}"[:400]


def parse_payload(payload: bytes, *, now: datetime | None = None) -> Message:
    """A validated event message, or ProtocolError with a short reason."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload: larger than {MAX_PAYLOAD_BYTES} bytes")
    if not payload.lstrip().startswith(b"{"):
        raise ProtocolError("payload: not a JSON object")
    try:
        message = Message.model_validate_json(payload)
    except ValidationError as exc:
        raise ProtocolError(_first_error(exc))
    except ValueError as exc:  # not UTF-8, or pathological JSON
        raise ProtocolError(f"payload: {exc}"[:400])
    now = now or datetime.now(UTC)
    if message.ts < now - MAX_AGE:
        raise ProtocolError("ts: older than 30 days")
    if message.ts > now + MAX_FUTURE:
        raise ProtocolError("ts: more than 5 minutes in the future")
    return message


def parse_presence(payload: bytes) -> str:
    """`online` or `offline` from a presence message."""
    text = payload.decode("utf-8", errors="replace").strip().strip('"').lower()
    if text not in ("online", "offline"):
        raise ProtocolError("presence: payload must be online or offline")
    return text


def encode(
    *,
    id: str,
    ts: datetime,
    type: EventType | str,
    user: str | None = None,
    data: dict[str, Any] | None = None,
) -> bytes:
    """A payload as a gateway sends it (used by the simulator, tests and benchmarks)."""
    body: dict[str, Any] = {"id": id, "ts": ts.astimezone(UTC).isoformat(), "type": str(type)}
    if user is not None:
        body["user"] = user
    if data is not None:
        body["data"] = data
    return json.dumps(body, separators=(",", ":")).encode()
