"""The incident taxonomy and severities: one source of truth for both sides of the link."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class IncidentType(StrEnum):
    LINK_DEGRADATION = "link_degradation"
    COMMS_OUTAGE = "comms_outage"
    RESOURCE_PRESSURE = "resource_pressure"
    NETWORK_ISSUE = "network_issue"
    APP_DEGRADATION = "app_degradation"
    AUTH_FAILURE = "auth_failure"
    SECURITY_ALERT = "security_alert"
    HARDWARE_ENVIRONMENT = "hardware_environment"
    NAVIGATION_DATA = "navigation_data"
    SAFETY = "safety"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def escalated(self) -> Severity:
        return _ORDER[min(self.rank + 1, len(_ORDER) - 1)]


_ORDER = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
_RANK = {s: i for i, s in enumerate(_ORDER)}


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SUPPRESSED = "suppressed"
    RESOLVED = "resolved"


class Priority(IntEnum):
    """Uplink lane: lower goes first."""

    URGENT = 0  # critical/high incidents, approval requests
    NORMAL = 1
    BULK = 2


def priority_for(severity: Severity) -> Priority:
    if severity.rank >= Severity.HIGH.rank:
        return Priority.URGENT
    if severity is Severity.MEDIUM:
        return Priority.NORMAL
    return Priority.BULK
