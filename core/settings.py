"""The one place that reads configuration: environment variables prefixed LABSHARE_."""

from __future__ import annotations

import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# ISO 4217 currencies we know the minor unit of (as Stripe writes them: lower case).
CURRENCY_EXPONENTS: dict[str, int] = {
    "cny": 2,
    "usd": 2,
    "eur": 2,
    "gbp": 2,
    "hkd": 2,
    "chf": 2,
    "sgd": 2,
    "aud": 2,
    "cad": 2,
    "jpy": 0,
    "krw": 0,
}


DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
# Secret keys generated into (or read from) a data directory, once per process.
_GENERATED_KEYS: dict[Path, str] = {}


def psycopg_url(value: str) -> str:
    """A bare postgresql:// URL would pick psycopg2, which we do not ship."""
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


# Requests doing database work at once in one server process (Settings.gate_slots): GATE_SLOTS
# on PostgreSQL; on SQLite SQLITE_GATE_SLOTS_PER_CPU a CPU, at least SQLITE_GATE_SLOTS_LEAST.
GATE_SLOTS = 3
SQLITE_GATE_SLOTS_PER_CPU = 4
SQLITE_GATE_SLOTS_LEAST = 8


class Settings(BaseSettings):
    """labshare's settings; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="LABSHARE_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./labshare.db"
    database_replica_urls: str = Field(
        default="",
        description="PostgreSQL streaming replicas, comma-separated: reads that tolerate a "
        "little lag go there (core.replicas).",
    )
    replica_max_lag_seconds: float = Field(
        default=5.0, ge=0, description="A replica further behind than this is skipped."
    )
    replica_wait_ms: int = Field(
        default=300,
        ge=0,
        le=10_000,
        description="How long a read waits for a replica to replay a person's last write "
        "before it goes to the primary instead.",
    )
    database_pooler: bool = Field(
        default=False,
        description="Connections go through PgBouncer in transaction mode: no server-side "
        "prepared statements, no session settings at connect.",
    )
    mqtt_url: str | None = None
    secret_key: str | None = None
    timezone: str = "Asia/Shanghai"
    currency: str = "cny"
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = Field(
        default=None, description="Override Stripe's API base (tests point it at a local server)."
    )
    data_dir: Path = Path(".labshare")
    token_ttl_minutes: int = 12 * 60
    sign_in_max_failures: int = Field(
        default=10,
        ge=1,
        description="Failed sign-ins per account within sign_in_window_minutes before "
        "further tries for it are refused (429 with Retry-After).",
    )
    sign_in_max_failures_per_address: int = Field(
        default=100,
        ge=1,
        description="Failed sign-ins from one address within sign_in_window_minutes "
        "before further tries from it are refused: higher than per account, since a "
        "campus or a company signs in from behind one address.",
    )
    sign_in_window_minutes: int = Field(default=15, ge=1)
    smtp_url: str | None = None
    calendar_allow_private_urls: bool = Field(
        default=False,
        description="Let imported calendar URLs reach loopback and private addresses.",
    )
    webhook_allow_private_urls: bool = Field(
        default=False,
        description="Let outgoing webhook endpoints be loopback and private addresses.",
    )
    page_size_max: int = 200

    # The request path's capacity, per server process. Each request holds one database
    # connection from its first query to its commit, inside one worker thread, so the gate
    # (at most `gate_slots` requests doing database work at once, never more than the pool)
    # never lets a request wait for a connection; the spare overflow serves background work
    # in the same process.
    db_pool_size: int = Field(default=20, ge=1, le=500)
    db_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=500,
        description="Requests doing database work at once per process (the gate's slots); "
        "default 3 on PostgreSQL, four per CPU and at least 8 on SQLite, at most "
        "db_pool_size.",
    )
    db_max_overflow: int = Field(default=10, ge=0, le=500)
    server_threads: int = Field(default=40, ge=1, le=1000)
    db_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for a database slot (or SQLite's write lock) "
        "before it is answered 503 with Retry-After.",
    )
    kpi_cache_seconds: int = Field(
        default=300,
        ge=0,
        description="How long the dashboard keeps the month in progress's figures.",
    )
    kpi_cache_past_seconds: int = Field(
        default=3600, ge=0, description="How long the dashboard keeps an ended month's figures."
    )
    kpi_warm: bool = Field(
        default=True, description="Compute the dashboard's figures in the background at start."
    )
    hours_warm: bool = Field(
        default=True,
        description="Read every instrument's opening hours in the background at start, so "
        "that no booking waits for a statement to read them.",
    )
    picker_cache_seconds: int = Field(
        default=60,
        ge=0,
        description="How long the catalog keeps its category and institution pickers' lists "
        "(a new lab or category shows within this time).",
    )
    db_statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="PostgreSQL statement_timeout for every connection."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="The largest request body (JSON, forms); larger is a 413, refused before "
        "the rest is read.",
    )
    max_upload_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="The largest calendar (.ics) or CSV upload.",
    )
    files_dir: Path | None = Field(
        default=None,
        description="Where a service request's files are kept (default: files/ under the "
        "data directory).",
    )
    max_file_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="The largest file a service request takes (a sample sheet, a result).",
    )
    access_log: bool = Field(default=False, description="uvicorn's access log under serve.")
    keep_alive_seconds: int = Field(
        default=30,
        ge=1,
        description="How long an idle keep-alive connection stays open. Longer than the "
        "clients' own idle expiry (httpx: 5 s), so a client never sends a request on a "
        "connection the server is closing that very moment.",
    )
    public_url: str | None = Field(
        default=None,
        description="The address people reach labshare at, for feed links and mails; never "
        "taken from a request's Host header.",
    )
    metrics_token: str | None = Field(
        default=None, description="Serve /metrics to requests bearing this token (else off)."
    )
    service_feed_secret: str | None = Field(
        default=None,
        min_length=16,
        description="Serve the service-record feed to a provincial platform bearing this "
        "secret, and sign each page with it (else off).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.lower()
        if value not in CURRENCY_EXPONENTS:
            raise ValueError(f"unknown currency {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, value: str) -> str:
        return psycopg_url(value)

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("public_url must be an absolute http(s) address")
        return value.rstrip("/")

    @property
    def public_base(self) -> str:
        """Where people reach labshare: LABSHARE_PUBLIC_URL, or the demo's own address."""
        return self.public_url or DEFAULT_PUBLIC_URL

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def replica_urls(self) -> list[str]:
        return [psycopg_url(u.strip()) for u in self.database_replica_urls.split(",") if u.strip()]

    @property
    def gate_slots(self) -> int:
        """Requests of one process doing database work at once. Their Python runs one
        thread at a time, whatever the CPUs, so a few at once are enough to keep it busy
        while others wait on the database; more take turns at Python's lock, each one's
        work stretched and its order left to chance. Served with two workers on 2 CPUs
        (bench/booking.py's mix, taking turns): 3 at once booked 11 to 24% faster than 8,
        p99 1.7 to 1.8 times the mean against 1.8 to 2.2; earlier, 20 at once booked 16%
        slower than 8. SQLite runs its queries inside the process, outside that lock, on
        the other CPUs: there more at once overlap them (served, 8 at once booked 10 to
        20% more than 3), so it keeps four per CPU, at least 8."""
        default = GATE_SLOTS
        if self.is_sqlite:
            default = max(
                SQLITE_GATE_SLOTS_LEAST, SQLITE_GATE_SLOTS_PER_CPU * (os.cpu_count() or 1)
            )
        return min(self.db_concurrency or default, self.db_pool_size)

    @property
    def files_path(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def signing_key(self) -> str:
        """The secret key, generated once per data directory when none is set."""
        if self.secret_key:
            return self.secret_key
        path = (self.data_dir / "secret_key").absolute()
        # Every request verifies a token with it: read the file once per process.
        known = _GENERATED_KEYS.get(path)
        if known is not None:
            return known
        if path.exists():
            key = _GENERATED_KEYS[path] = path.read_text().strip()
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        log.warning("LABSHARE_SECRET_KEY is not set; generated one in %s", path)
        _GENERATED_KEYS[path] = key
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
