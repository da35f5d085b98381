# Sourced by scripts/run.sh and scripts/test.sh: installs what Hubbub needs on Debian 12 —
# idempotent (installs only what is missing) and non-interactive.
#
#   source scripts/setup.sh app    # what building and running the app needs
#   source scripts/setup.sh test   # that, plus what the test suite runs against

hubbub_setup() {
    local purpose=${1:-app}
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"

    # The app: a Rust toolchain's C needs, WebKitGTK and friends for Tauri, D-Bus for the
    # keychain, Node.js for building the web UI.
    local packages=(build-essential pkg-config curl ca-certificates git file
        libwebkit2gtk-4.1-dev libssl-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
        libdbus-1-dev nodejs)
    if [ "$purpose" = test ]; then
        # Peers and servers the tests run against: Python (aiosignalr), Redis and PostgreSQL
        # (the backplane tests start clusters of their own with initdb/pg_ctl), Chromium for
        # the UI tests, WebKitWebDriver + Xvfb (+ xdotool to resize and focus the window, dunst
        # to show notifications) for the end-to-end tests, GNOME Keyring under a
        # private D-Bus for the keychain tests, promtool (in `prometheus`) to check the hub's
        # /metrics.
        packages+=(python3 python3-venv python3-pip redis-server postgresql chromium webkit2gtk-driver xvfb
            xdotool dunst dbus dbus-bin gnome-keyring libsecret-tools prometheus)
    fi
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi

    # npm: Debian ships it apart from nodejs; NodeSource's nodejs already has it.
    if ! command -v npm >/dev/null 2>&1; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm
    fi

    # Rust: the machine's toolchain if there is one, else rustup's stable.
    if ! command -v cargo >/dev/null 2>&1; then
        if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
            echo "setup: installing the Rust toolchain with rustup"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        fi
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if command -v rustup >/dev/null 2>&1; then
        for c in rustfmt clippy; do
            rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
        done
    fi

    # cargo-nextest runs the suite, every test with a time limit (.config/nextest.toml).
    if [ "$purpose" = test ] && ! cargo nextest --version >/dev/null 2>&1; then
        echo "setup: installing cargo-nextest"
        cargo install cargo-nextest --locked
    fi

    # The WebDriver front for Tauri apps (end-to-end tests).
    if [ "$purpose" = test ] && ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
        echo "setup: installing tauri-driver"
        cargo install tauri-driver --locked --version 2.1.0
    fi
    export PATH="$PATH:$HOME/.cargo/bin"

    # The web UI's and the Tauri CLI's packages (from package-lock.json; again only when the
    # lock file is newer than what is installed).
    local dir
    for dir in ui .; do
        if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
            (cd "$dir" && npm ci --no-audit --no-fund)
        fi
    done

    # One target directory outside the clone, reused across clones and CI runs.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubbub/target}"
    mkdir -p "$CARGO_TARGET_DIR"
}

hubbub_setup "$@"
