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
