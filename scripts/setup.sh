# Sourced by scripts/run.sh and scripts/test.sh: installs what Hubbub needs on Debian 12 —
# idempotent (installs only what is missing) and non-interactive.
#
#   source scripts/setup.sh app    # what building and running the app needs
#   source scripts/setup.sh test   # that, plus what the test suite runs against

hubbub_setup() {
    local purpose=${1:-app}
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"

    local packages=(build-essential pkg-config curl ca-certificates git)
    if [ "$purpose" = test ]; then
        packages+=(python3 python3-venv python3-pip nodejs redis-server)
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
    if [ "$purpose" = test ] && ! command -v npm >/dev/null 2>&1; then
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

    # One target directory outside the clone, reused across clones and CI runs.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hubbub/target}"
    mkdir -p "$CARGO_TARGET_DIR"
}

hubbub_setup "$@"
