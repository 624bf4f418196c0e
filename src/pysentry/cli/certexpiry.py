"""Dapr's root-expiry warning (``CheckForCertExpiry``, spec A.6), for both platforms.

The text is Dapr's, with the platform in the first sentence: "of your Kubernetes cluster" (Dapr's
word for word) or "of your self-hosted installation".
"""

from __future__ import annotations

from datetime import datetime

from pysentry.cli import console

WARNING_DAYS = 30
RENEWAL_HELP = (
    "Please see docs.dapr.io for certificate renewal instructions to avoid service interruptions."
)


def expiry_warning_for(not_after: datetime, now: datetime, where: str) -> str | None:
    """The warning for a root valid until ``not_after``, or None when 30 days or more are left.

    Days are Go's ``int(hours / 24)``, truncated toward zero, so (-1, 1) days is "today"."""
    days = console.days_until(not_after, now)
    if days >= WARNING_DAYS:
        return None
    if days == 0:
        msg = f"{where} expires today."
    elif days < 0:
        msg = f"{where} has expired."
    else:
        msg = f"{where} expires in {days} days."
    return f"{msg} Expiry date: {console.rfc1123(not_after)}. \n {RENEWAL_HELP}"
