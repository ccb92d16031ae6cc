#!/usr/bin/env bash
# What the web tests need: the [web] and [webtest] extras, and Debian's Chromium for the browser tests (Playwright
# drives it through executable_path; its own browser download is never used). Run inside the activated venv.
# Without root or apt, the browser tests skip with the reason and everything else still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[web,webtest]"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        # fonts-wqy-zenhei: CJK glyphs, so the Chinese page renders in screenshots
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null
    else
        echo "install-web: chromium not installed and apt-get unavailable (not root?): browser tests will skip" >&2
    fi
fi
