"""Notifications (policy segment `notify`, docs/notifications.md): the crew on the ship and
operations ashore hear of incidents that matter, once, within quiet hours, storms and rate
limits, by webhook or e-mail, spooled in SQLite until delivered.

`engine` decides (pure, clock as an argument), `spool` keeps, `channels` deliver,
`notifier` runs the three on the event loop for one side.
"""

from shared.notify.channels import DeliveryError, SmtpSender, WebhookSender, signature
from shared.notify.engine import Change, ChannelState, Engine, Notification, Outcome, change_of
from shared.notify.notifier import Notifier, NotifyMetrics
from shared.notify.spool import DDL, Spool

__all__ = [
    "DDL",
    "Change",
    "ChannelState",
    "DeliveryError",
    "Engine",
    "Notification",
    "Notifier",
    "NotifyMetrics",
    "Outcome",
    "SmtpSender",
    "Spool",
    "WebhookSender",
    "change_of",
    "signature",
]
