"""Mail over SMTP (smtplib), configured by LABSHARE_SMTP_URL.

Forms: `smtp://[user:pass@]host[:port]` (plain, port 25), `smtp+starttls://...` (port 587,
STARTTLS), `smtps://...` (TLS from the start, port 465). Query: `from=` the sender address
(default `labshare@<host>`), `timeout=` seconds.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from core.errors import Invalid

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailConfigInvalid(Invalid):
    """LABSHARE_SMTP_URL cannot be used; the message says why."""


class MailerUnavailable(Exception):
    """The SMTP server cannot be reached or refused us; nothing more can be sent now."""


@dataclass(frozen=True)
class SmtpConfig:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    timeout: float


def parse_smtp_url(url: str) -> SmtpConfig:
    """The SMTP settings in `url`; MailConfigInvalid with a reason otherwise."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise MailConfigInvalid(
            f"LABSHARE_SMTP_URL: scheme must be one of {', '.join(DEFAULT_PORTS)}, not {scheme!r}"
        )
    if not parts.hostname:
        raise MailConfigInvalid("LABSHARE_SMTP_URL: no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise MailConfigInvalid("LABSHARE_SMTP_URL: the port is not a number")
    query = parse_qs(parts.query)
    try:
        timeout = float(query.get("timeout", ["30"])[0])
    except ValueError:
        raise MailConfigInvalid("LABSHARE_SMTP_URL: timeout must be a number of seconds")
    return SmtpConfig(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sender=query.get("from", [f"labshare@{parts.hostname}"])[0],
        timeout=timeout,
    )


def build_message(
    *, sender: str, to: str, subject: str, body: str, message_id: str
) -> EmailMessage:
    """A plain-text message; the stable Message-ID lets servers drop a resent duplicate."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body or subject)
    return message


class Mailer:
    """One SMTP connection for a run of messages: `with Mailer(config) as m: m.send(msg)`."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        cfg = self.config
        try:
            if cfg.scheme == "smtps":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
                if cfg.scheme == "smtp+starttls":
                    smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            raise MailerUnavailable(f"SMTP {cfg.host}:{cfg.port}: {exc}")
        self._smtp = smtp
        return self

    def send(self, message: EmailMessage) -> None:
        """Send one message. SMTPRecipientsRefused and the like concern this message only;
        MailerUnavailable means the connection is gone."""
        assert self._smtp is not None, "use Mailer as a context manager"
        try:
            self._smtp.send_message(message)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError):
            raise  # this message only (smtplib's errors are OSErrors: sort them first)
        except OSError as exc:  # disconnected, refused sender, timeouts: the run stops
            raise MailerUnavailable(f"SMTP {self.config.host}:{self.config.port}: {exc}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None
