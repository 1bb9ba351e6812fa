"""Ground truth for log templates: the event types behind every line the simulator writes.

One entry per kind of message the generators write (background, faults, maintenance, the
GPS poller), as a regular expression over the message. Values that vary between
occurrences of one event are parameters: numbers, addresses, ids, hashes, names of guests,
users, hosts and ports, a protocol, a link's new state, an ACL's action, a MODCOD pair, a
quoted title, how a sale was paid. What the line is about is the template: which cron job
ran (its command line) and which systemd unit started or stopped are different events.
`event_type` is what a log parser's grouping is graded against: two lines belong together
exactly when they have the same event type.
"""

from __future__ import annotations

import re

_IP = r"\d+\.\d+\.\d+\.\d+"

# systemd units the simulator runs: description, and what their lines say
_TIMER_JOB = ("starting", "finished", "deactivated")
_CRASHING_APP = ("exited", "failed", "restart", "stopped", "started")
_PATCHED = ("stopping", "exited", "started")
_UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sysstat-collect": ("system activity accounting tool", _TIMER_JOB),
    "logrotate": ("Rotate log files", _TIMER_JOB),
    "man-db": ("Daily man-db regeneration", _TIMER_JOB),
    "apt-daily": ("Daily apt download activities", _TIMER_JOB),
    "dpkg-db-backup": ("Daily dpkg database backup service", _TIMER_JOB),
    "pos": ("Point of Sale", _CRASHING_APP),
    "reservations": ("Ship Reservations API", _CRASHING_APP),
    "mediasrv": ("Media Streaming Server", _CRASHING_APP),
    "postfix": ("", _PATCHED),
    "crewportal": ("", _PATCHED),
    "nginx": ("", _PATCHED),
}


def _per_unit() -> list[tuple[str, str]]:
    """A unit's life-cycle lines: which unit did what is the event, so each unit has its own."""
    out = []
    for unit, (desc, actions) in _UNITS.items():
        u = re.escape(f"{unit}.service")
        named = f"{u} - {re.escape(desc)}" if desc else u
        patterns = {
            "starting": rf"Starting {named}\.\.\.",
            "finished": rf"Finished {named}\.",
            "deactivated": rf"{u}: Deactivated successfully\.",
            "stopping": rf"Stopping {u}\.\.\.",
            "stopped": rf"Stopped {named}\.",
            "started": rf"Started {named}\.",
            "exited": rf"{u}: Main process exited, code=\S+, status=\S+",
            "failed": rf"{u}: Failed with result 'exit-code'\.",
            "restart": rf"{u}: Scheduled restart job, restart counter is at \d+\.",
        }
        out += [(f"{unit}_{action}", patterns[action]) for action in actions]
    return out


_TYPES: tuple[tuple[str, str], ...] = (
    # --- guest traffic: firewall, Wi-Fi, captive portal, media
    (
        "fw_built",
        rf"Built outbound (?:TCP|UDP) connection \d+ for outside:{_IP}/\d+ \({_IP}/\d+\) to "
        rf"guest:{_IP}/\d+ \({_IP}/\d+\)",
    ),
    (
        "fw_teardown",
        rf"Teardown TCP connection \d+ for outside:{_IP}/443 to guest:{_IP}/\d+ duration "
        rf"\d+:\d+:\d+ bytes \d+ TCP FINs",
    ),
    (
        "fw_deny",
        rf'Deny tcp src outside:{_IP}/\d+ dst inside:{_IP}/\d+ by access-group "OUTSIDE_IN" '
        rf"\[0x0, 0x0\]",
    ),
    ("fw_dhcp", rf"DHCP daemon interface guest: address granted \S+ \({_IP}\)"),
    (
        "fw_scan_drop",
        r"\[ Scanning\] drop rate-1 exceeded\. Current burst rate is \d+ per second, max "
        r"configured rate is 10; Current average rate is \d+ per second, max configured rate is "
        r"5; Cumulative total count is \d+",
    ),
    ("wifi_assoc", rf'client \S+ \(\S+\) associated to SSID "\S+" on \S+ ch \d+, ip {_IP}'),
    (
        "wifi_disassoc",
        r'client \S+ \(\S+\) disassociated from SSID "\S+": reason 8 \(station leaving\), session '
        r"\d+ min, rx \S+ MB, tx \S+ MB",
    ),
    ("wifi_roam", rf"client \S+ \(\S+\) roamed from \S+, rssi -\d+ dBm, ip {_IP}"),
    ("portal_login", rf"login ok user=\S+ ip={_IP} mac=\S+ device=\S+ cabin=\d+ plan=\S+"),
    ("portal_fail", rf"login failed user=\S+ ip={_IP} reason=invalid voucher code"),
    ("media_start", rf'INFO stream start title=".+" client={_IP} cabin=\d+ bitrate=\d+k'),
    ("media_stop", rf'INFO stream stop title=".+" client={_IP} watched=\d+min'),
    # --- crew and guest-facing applications
    (
        "pos_sale",
        r"INFO sale outlet=\S+ check=\d+ items=\d+ total=\S+ EUR tender=(?:card pan=\*+\d+ "
        r"auth=\d+|room cabin=\d+ guest=\".+\") status=approved",
    ),
    ("pos_terminal_timeout", r"WARN terminal T\d+ response timeout after 15000 ms, retrying"),
    (
        "pos_card_declined_gateway",
        r"ERROR card authorisation failed: acquirer gateway timeout after 30000 ms \(terminal "
        r"T\d+, check \d+\)",
    ),
    (
        "res_booking",
        r'INFO booking confirmed ref=RSV-\d+ guest=".+" cabin=\d+ venue=\S+ party=\d+ slot=\d+:\d+',
    ),
    ("res_http", r"INFO GET /api/v1/availability\?venue=\S+ 200 \d+ms"),
    (
        "res_slow_query",
        r"WARN slow query \d+ms: SELECT \* FROM bookings WHERE slot_date = \$1 AND venue_id = \$2",
    ),
    ("app_request", r"INFO request completed path=\S+ status=200 ms=\d+"),
    ("app_db_refused", rf"FATAL could not connect to database at {_IP}:5432: Connection refused"),
    ("app_db_connected", rf"INFO connected to database at {_IP}:5432"),
    ("app_pool_saturated", r"WARN worker pool saturated: 64/64 busy, \d+ requests queued"),
    ("app_heap_warning", r"WARN heap usage above 85%"),
    ("app_debug_enabled", r"INFO debug logging enabled for module payments by admin"),
    ("app_disk_warning", r"WARN disk usage above 85% on \S+"),
    (
        "app_journal_enospc",
        r"ERROR journal write failed: \[Errno 28\] No space left on device: '\S+'",
    ),
    ("app_debug_purged", r"INFO debug logs purged, journal writes resumed"),
    ("crew_portal_login", rf"INFO login user=\S+ from {_IP}"),
    (
        "mail_sent",
        r"[0-9A-F]+: to=<\S+>, relay=\S+:587, delay=\S+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 "
        r"Ok\)",
    ),
    ("backup_done", r"INFO \S+ GB written to nas-01 in \d+ s"),
    # --- sshd and PAM
    (
        "ssh_accepted_key",
        rf"Accepted publickey for \S+ from {_IP} port \d+ ssh2: ED25519 SHA256:\S+",
    ),
    ("ssh_accepted_password", rf"Accepted password for \S+ from {_IP} port \d+ ssh2"),
    ("ssh_failed_password", rf"Failed password for \S+ from {_IP} port \d+ ssh2"),
    ("ssh_failed_invalid_user", rf"Failed password for invalid user \S+ from {_IP} port \d+ ssh2"),
    ("ssh_invalid_user", rf"Invalid user \S+ from {_IP} port \d+"),
    (
        "ssh_closed_preauth",
        rf"Connection closed by invalid user \S+ from {_IP} port \d+ \[preauth\]",
    ),
    (
        "pam_session_opened",
        r"pam_unix\(sshd:session\): session opened for user \S+\(uid=\d+\) by \(uid=0\)",
    ),
    ("pam_session_closed", r"pam_unix\(sshd:session\): session closed for user \S+"),
    (
        "pam_auth_failure",
        rf"pam_unix\(sshd:auth\): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        rf"rhost={_IP}  user=\S+",
    ),
    # --- hosts: kernel, systemd, cron, networking
    (
        "ufw_block",
        rf"\[UFW BLOCK\] IN=eno1 OUT= SRC={_IP} DST={_IP} LEN=52 TOS=0x00 TTL=63 ID=\d+ DF "
        rf"PROTO=TCP SPT=\d+ DPT=445 WINDOW=64240 SYN URGP=0",
    ),
    (
        "nic_link_up",
        r"e1000e 0000:00:1f\.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    ),
    (
        "oom_kill",
        r"Out of memory: Killed process \d+ \(\S+\) total-vm:\d+kB, anon-rss:\d+kB, file-rss:0kB, "
        r"shmem-rss:0kB, UID:998 pgtables:\d+kB oom_score_adj:0",
    ),
    ("kernel_version", r"Linux version \S+"),
    ("timesync", r"Contacted time server 10\.10\.0\.1:123 \(ntp\.ship\.lan\)\."),
    ("dhcp_lease", rf"eno1: DHCPv4 address {_IP}/24, gateway {_IP} acquired from {_IP}"),
    ("cron_healthcheck", r"\(\S+\) CMD \(/opt/app/bin/healthcheck --quiet\)"),
    ("cron_export_sales", r"\(pos\) CMD \(/opt/pos/bin/export-sales --incremental\)"),
    ("cron_reminders", r"\(resv\) CMD \(/opt/reservations/bin/send-reminders --due\)"),
    ("cron_epg", r"\(media\) CMD \(/usr/local/bin/epg-refresh\)"),
    ("cron_mailq", r"\(root\) CMD \(/usr/local/sbin/mailq-check\)"),
    ("cron_hourly", r"\(root\) CMD \(cd / && run-parts --report /etc/cron\.hourly\)"),
    (
        "cron_daily",
        r"\(root\) CMD \(test -x /usr/sbin/anacron \|\| run-parts --report /etc/cron\.daily\)",
    ),
    ("cron_backup", r"\(root\) CMD \(/usr/local/sbin/backup-nightly\)"),
    ("cron_close_day", r"\(pos\) CMD \(/opt/pos/bin/close-day --all-outlets\)"),
    ("cron_purge", r"\(resv\) CMD \(/opt/reservations/bin/purge-expired --days 30\)"),
    *_per_unit(),
    ("reboot_target", r"Reached target reboot\.target - System Reboot\."),
    ("startup_finished", r"Startup finished in \S+ \(kernel\) \+ \S+ \(userspace\)\."),
    ("apt_upgrade", r"upgrade: \d+ packages upgraded, \d+ newly installed, \d+ to remove"),
    # --- network devices
    ("acl_log", rf"list \S+ \S+ tcp {_IP}\(\d+\) -> {_IP}\(\d+\), 1 packet"),
    (
        "switch_ssh_login",
        r"User 'netadmin' authentication for SSH2 Session from 10\.10\.1\.23 \(tty = 0\) using "
        r"crypto cipher 'aes256-ctr', hmac 'hmac-sha2-256' Succeeded",
    ),
    ("mac_flap", r"Host \S+ in vlan 20 is flapping between port \S+ and port \S+"),
    ("link_updown", r"Interface \S+, changed state to \S+"),
    ("lineproto_updown", r"Line protocol on Interface \S+, changed state to \S+"),
    (
        "switch_reload",
        rf"Reload requested by netadmin on vty0 \({_IP}\)\. Reload Reason: firmware upgrade\.",
    ),
    ("switch_restarted", r"System restarted -- firmware \S+"),
    ("fan_failed", r"Fan 2 has failed, airflow reduced"),
    ("temp_warning", r"Inlet temperature above threshold: \d+C \(threshold 55C\)"),
    ("temp_ok", r"Inlet temperature back to normal: \d+C"),
    # --- satellite terminal and navigation
    ("modem_keepalive", rf"NMS keepalive ok, hub {_IP} rtt \d+ ms"),
    ("modem_acm", r"ACM: MODCOD change \S+ \S+ -> \S+ \S+"),
    ("modem_rain_fade", r"rain fade: Es/No \S+ dB, fade margin 0\.2 dB below 1\.0 dB"),
    ("modem_lock_lost", r"Rx lock lost, carrier not found \(demod searching\)"),
    ("modem_lock_state", r"Rx lock (?:acquired|degraded|stable), Es/No \S+ dB"),
    ("modem_tx_muted", r"Tx muted: no Rx lock"),
    ("modem_tx_unmuted", r"Tx unmuted"),
    ("modem_buc_alarm", r"BUC alarm: PSU fault, Tx disabled"),
    ("modem_buc_cleared", r"BUC alarm cleared, Tx enabled"),
    ("modem_no_carrier", r"demod searching: no carrier on \S+ GHz"),
    ("acu_tracking", r"tracking ok sat=E9B pol=H agc \d+"),
    ("acu_blockage", r"blockage zone entered \(sector 160-200 deg relative\), tracking held"),
    ("acu_blockage_left", r"blockage zone left, tracking resumed"),
    (
        "gps_dgps_state",
        r"DGPS corrections (?:restored|unavailable), fix quality \d \(D?GPS\), \d+ satellites",
    ),
    ("gps_antenna_open", r"antenna status OPEN \(no current on active antenna feed\)"),
    ("gps_antenna_ok", r"antenna status OK"),
    ("gps_fix_lost", r"GPS fix lost \(mode 1, 0 satellites used\)"),
    ("gps_no_fix", r"no fix: \d+ satellites visible, 0 used"),
    ("gps_fix_acquired", r"GPS fix acquired \(mode 3D\), \d+ satellites used"),
)


def _prefix(pattern: str) -> str:
    """The literal text a pattern starts with: a cheap test before the regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
        elif ch in ".^$*+?{}[]()|\\":
            break
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_COMPILED = [(name, _prefix(pattern), re.compile(pattern)) for name, pattern in _TYPES]
EVENT_TYPES = tuple(name for name, _pattern in _TYPES)


def matching_types(message: str) -> list[str]:
    """Every event type whose pattern matches; the catalogue's tests want exactly one."""
    return [
        name for name, head, rx in _COMPILED if message.startswith(head) and rx.fullmatch(message)
    ]


def event_type(message: str) -> str:
    """The event type of a message the simulator wrote; raises unless exactly one matches."""
    found = matching_types(message)
    if len(found) != 1:
        raise ValueError(f"{len(found)} event types for {message!r}: {found}")
    return found[0]
