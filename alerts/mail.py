"""E-mail delivery over SMTP (smtplib). The body holds pseudonymous ids and the one-sentence reasons only."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from alerts.webhook import DeliveryResult


def render(payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and text of a notification, Swedish first (carers work in Swedish)."""
    if payload.get("type") == "alert":
        a = payload.get("alert", {})
        subject = f"[CareChain] {a.get('severity')} {a.get('kind')} – {a.get('resident_id')} (nivå {a.get('tier')})"
        text = (
            f"{a.get('reason_sv')}\n{a.get('reason')}\n\n"
            f"Larm {a.get('id')} ({a.get('alert_uuid')}), boende {a.get('resident_id')}, hem {a.get('home_id')},\n"
            f"status {a.get('status')}, steg {payload.get('step')}.\n"
        )
    else:
        subject = f"[CareChain] {payload.get('type')}"
        text = str(payload.get("text") or payload)
    return subject, text


class MailSender:
    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s

    def send(self, to: str, payload: dict[str, Any], idempotency_key: str) -> DeliveryResult:
        subject, text = render(payload)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        # A stable Message-ID per notification lets mail systems drop a duplicate too.
        msg["Message-ID"] = f"<{idempotency_key.replace(':', '.').replace('@', '_')}@carechain>"
        msg["X-CareChain-Idempotency-Key"] = idempotency_key
        msg.set_content(text)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as s:
                s.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:
            return DeliveryResult(False, None, f"{type(e).__name__}: {e}")
        return DeliveryResult(True, 250, "sent")
