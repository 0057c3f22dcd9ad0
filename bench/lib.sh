# Shared by the bench scripts (sourced, not run): the pieces each of them needs alike.

# The opaque confidential client's secret; the same as BENCH_OPAQUE_SECRET in
# crates/khoa-bench/src/creds.rs, which the client-credentials-opaque scenario presents.
BENCH_OPAQUE_SECRET=bench-opaque-secret-0123456789abcdef

# free_port FROM TO: prints the first port in FROM..TO that nothing listens on, or fails.
free_port() {
    local p
    for p in $(seq "$1" "$2"); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port in $1-$2; set PORT" >&2
    return 1
}

# register_bench_opaque KHOA DATA_DIR: registers the opaque client `bench-opaque` with the CLI
# in the demo database under DATA_DIR (the demo seeds none, and HTTP cannot create one). The
# server must not be running: the CLI writes the database itself.
register_bench_opaque() {
    printf '%s\n' "$BENCH_OPAQUE_SECRET" |
        KHOA_DATABASE_URL="sqlite://$2/khoa.db" KHOA_MASTER_KEY_FILE="$2/master.key" KHOA_LOG=warn \
            "$1" client add bench-opaque --grant-types client_credentials --token-format opaque \
            --secret-stdin >/dev/null
}
