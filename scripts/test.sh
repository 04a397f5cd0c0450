#!/usr/bin/env bash
# Build nabla and run every test suite twice: in a release build, then in a
# debug build under AddressSanitizer + UndefinedBehaviorSanitizer, where
# undefined behaviour, memory errors and leaks fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

setup() { # setup DIR [meson options...]
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

echo "== release build"
setup build -Dbuildtype=release
meson compile -C build
meson test -C build --print-errorlogs

echo "== sanitized build (ASan + UBSan + LeakSanitizer)"
setup build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  meson test -C build-asan --print-errorlogs --timeout-multiplier 3

# One closing line over both builds, from the Check runners' own summaries
# ("100%: Checks: 10, Failures: 0, Errors: 0") in meson's test logs.
awk '/^[0-9]+%: Checks: / { gsub(",", ""); c += $3; f += $5 + $7 }
     END { printf "%d passed, %d failed\n", c - f, f }' \
  build/meson-logs/testlog.txt build-asan/meson-logs/testlog.txt
