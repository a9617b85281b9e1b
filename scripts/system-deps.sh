#!/bin/sh
# Installs the Debian packages Loupe's window and its tests need, if any are missing.
#   window: Qt WebEngine's X libraries.  tests: Xvfb, a window manager, xdotool, ImageMagick
#   (screenshots), Debian's Chromium for the browser tests, binutils (strip) for the bundle,
#   exiftool (libimage-exiftool-perl), the independent reader the metadata tests check against;
#   iproute2 (`ip`) for the share tests' private network namespace; npm (axe-core for the
#   accessibility tests, from the npm registry).
set -eu
WINDOW="libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libnss3 libegl1 libgl1 libxcomposite1 libxdamage1 libxrandr2 libxtst6 libxkbfile1 libasound2"
TESTS="xvfb openbox xdotool x11-utils imagemagick chromium binutils libimage-exiftool-perl iproute2"
want="$WINDOW"
[ "${1:-}" = "--tests" ] && want="$WINDOW $TESTS"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm may come from Debian or from another Node install: any npm on PATH will do.
[ "${1:-}" = "--tests" ] && ! command -v npm >/dev/null 2>&1 && missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "Installing system packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
