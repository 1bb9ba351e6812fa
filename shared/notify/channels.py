"""Delivery: one sender per configured channel, each with one method, `send`.

A sender either delivers or raises `DeliveryError`; `permanent` says retrying cannot help
(the payload or a recipient was refused), and the spool then gives the notification up,
counted and logged. Everything else — a relay or endpoint unreachable, a timeout, a 5xx,
a missing secret, a refused login — is worth another try later, so the notification
waits in the spool: a misconfiguration fixed tomorrow still delivers today's incidents.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import httpx

from shared.notify.engine import Notification
from shared.policy import SmtpChannel, WebhookChannel

SIGNATURE_HEADER = "X-Seawatch-Signature"
ID_HEADER = "X-Seawatch-Notification"
# the payload itself refused: the same request would be refused again
_PERMANENT_HTTP = frozenset({400, 413, 415, 422})


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    async def send(self, note: Notification) -> None: ...

    async def close(self) -> None: ...


def secret(variable: str) -> str:
    """A channel's secret from the environment, never from the policy."""
    value = os.environ.get(variable)
    if not value:
        raise DeliveryError(f"environment variable {variable} is not set")
    return value


def signature(key: str, body: bytes) -> str:
    """The value of the signature header: receivers recompute it over the raw body."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, channel: WebhookChannel) -> None:
        self.channel = channel
        self._client: httpx.AsyncClient | None = None

    async def send(self, note: Notification) -> None:
        ch = self.channel
        body = note.model_dump_json().encode()
        headers = {"Content-Type": "application/json", ID_HEADER: note.id}
        if ch.secret_env:
            headers[SIGNATURE_HEADER] = signature(secret(ch.secret_env), body)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=ch.timeout_s)
        try:
            response = await self._client.post(ch.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            code = response.status_code
            raise DeliveryError(f"HTTP {code}: {response.text[:200]}", code in _PERMANENT_HTTP)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class SmtpSender:
    """smtplib in a worker thread: one connection per message, which is what a relay that
    comes and goes (a ship's) wants."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel

    async def send(self, note: Notification) -> None:
        await asyncio.to_thread(self._send, note)

    async def close(self) -> None:
        return None

    def _send(self, note: Notification) -> None:
        ch = self.channel
        msg = EmailMessage()
        msg["Subject"] = note.subject
        msg["From"] = ch.sender
        msg["To"] = ", ".join(note.recipients)
        msg["Date"] = formatdate(note.created, usegmt=True)
        msg["Message-ID"] = f"<{note.id}@seawatch>"  # stable across retries
        msg.set_content(note.text)
        password = secret(ch.password_env) if ch.username and ch.password_env else None
        smtp_class = smtplib.SMTP_SSL if ch.ssl else smtplib.SMTP
        try:
            with smtp_class(ch.host, ch.port, timeout=ch.timeout_s) as smtp:
                if ch.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if ch.username and password:
                    smtp.login(ch.username, password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"recipients refused: {exc.recipients}", min(codes) >= 500) from exc
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise DeliveryError(f"refused: {exc}", exc.smtp_code >= 500) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


def sender_for(channel: WebhookChannel | SmtpChannel) -> Sender:
    if isinstance(channel, WebhookChannel):
        return WebhookSender(channel)
    return SmtpSender(channel)
