# Sourced by test scripts: locate ../shared. Missing data skips (77) with a
# message, except under CI, where it is a hard error (99).
need_shared() {
    if [ ! -d "$SHARED_DIR/$1" ]; then
        if [ -n "$CI" ]; then
            echo "ERROR: $SHARED_DIR/$1 is missing (CI needs ../shared beside the checkout)"
            exit 99
        fi
        echo "SKIP: $SHARED_DIR/$1 not found (put the shared data beside the checkout)"
        exit 77
    fi
}

# need_tool TOOL WHY: a tool the test cannot run without. Missing, it skips
# (77) with a message, except under CI, where it is a failure (99):
# scripts/install-deps installs every such tool.
need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ -n "$CI" ]; then
        echo "ERROR: $1 not found ($2); CI needs it (scripts/install-deps installs it)"
        exit 99
    fi
    echo "SKIP: $1 not found ($2)"
    exit 77
}
