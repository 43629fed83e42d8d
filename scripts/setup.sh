#!/usr/bin/env bash
# Installs what cuecast needs and is missing: Debian packages (GStreamer 1.22, its Python bindings,
# gst-rtsp-server GIR, ffmpeg, the compiler and -dev packages for the native plugin; chromium and nginx for
# the tests), then builds the native plugin (native/, meson + ninja) and the venv with cuecast in it.
# Idempotent: a second run finds everything present and installs nothing.
set -euo pipefail

VENV="${VENV:-.venv}"
APT_PACKAGES=(
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-libav
    python3-gi python3-gst-1.0 gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
    gir1.2-gst-plugins-bad-1.0 gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-nice gstreamer1.0-rtsp
    python3-venv ffmpeg v4l-utils psmisc iproute2 systemd
    gcc meson ninja-build pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
)
# Only for `make test` / `make bench` (setup.sh --test): the browser and the media server the tests drive, and
# the aarch64 cross compiler and qemu-user that build and run the Raspberry Pi's kernels' tests.
TEST_APT_PACKAGES=(chromium nginx libnginx-mod-rtmp gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
[[ "${1:-}" == "--test" ]] && APT_PACKAGES+=("${TEST_APT_PACKAGES[@]}")

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The tests start their own nginx on loopback ports; the system-wide one we just installed is not wanted
    # (it would hold port 80 from now on).
    if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
fi

# The venv sees Debian's gi (PyGObject with the Gst overrides); everything else comes from pip.
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "setup: creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# Reinstall only when pyproject.toml changed since the last install.
stamp="$VENV/.cuecast-installed"
if [[ ! -f "$stamp" ]] || ! cmp -s pyproject.toml "$stamp"; then
    echo "setup: installing cuecast into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]'
    cp pyproject.toml "$stamp"
fi

# The native plugin (the capture path's elements), rebuilt whenever its sources change.
native_out="src/cuecast/_native/libgstcuecast.so"
native_sum=$(cat native/meson.build native/meson_options.txt native/*.c native/*.h native/testcam/*.c \
    native/tests/*.c native/cross/* | sha256sum | cut -d' ' -f1)
native_stamp="build/native/.cuecast-sources"
if [[ ! -f "$native_out" || ! -f "$(dirname "$native_out")/libcuecast-testcam.so" || ! -f "$native_stamp" || "$(cat "$native_stamp")" != "$native_sum" ]]; then
    echo "setup: building the native plugin (native/ -> $native_out)"
    mkdir -p build
    if [[ ! -f build/native/build.ninja ]]; then
        rm -rf build/native
        meson setup build/native native --buildtype=release >build/meson-setup.log 2>&1 \
            || { cat build/meson-setup.log >&2; echo "setup: meson setup failed" >&2; exit 1; }
    fi
    ninja -C build/native >build/native-build.log 2>&1 \
        || { cat build/native-build.log >&2; echo "setup: building the native plugin failed" >&2; exit 1; }
    mkdir -p "$(dirname "$native_out")"
    cp build/native/libgstcuecast.so "$native_out.tmp" && mv "$native_out.tmp" "$native_out"
    testcam_out="$(dirname "$native_out")/libcuecast-testcam.so"  # the test camera's LD_PRELOAD library
    cp build/native/libcuecast-testcam.so "$testcam_out.tmp" && mv "$testcam_out.tmp" "$testcam_out"
    echo "$native_sum" >"$native_stamp"
fi

# --test: the plain-C kernels cross-built for the Raspberry Pi's aarch64 (their tests run under qemu-user in
# `make test`), rebuilt with the native plugin.
if [[ "${1:-}" == "--test" ]]; then
    arm_stamp="build/native-aarch64/.cuecast-sources"
    if [[ ! -f "$arm_stamp" || "$(cat "$arm_stamp")" != "$native_sum" ]]; then
        echo "setup: cross-building the kernels for aarch64 (native/ -> build/native-aarch64)"
        if [[ ! -f build/native-aarch64/build.ninja ]]; then
            rm -rf build/native-aarch64
            meson setup build/native-aarch64 native --cross-file native/cross/aarch64.ini -Dkernels_only=true \
                >build/meson-setup-aarch64.log 2>&1 \
                || { cat build/meson-setup-aarch64.log >&2; echo "setup: aarch64 meson setup failed" >&2; exit 1; }
        fi
        ninja -C build/native-aarch64 >build/native-build-aarch64.log 2>&1 \
            || { cat build/native-build-aarch64.log >&2; echo "setup: aarch64 kernels failed to build" >&2; exit 1; }
        echo "$native_sum" >"$arm_stamp"
    fi
fi
