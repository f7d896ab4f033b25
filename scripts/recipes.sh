# Sourced by train.sh and search.sh: how a recipe runs, and `list`.
# RECIPE is the first argument; the rest are appended to every command the recipe runs.
RECIPE="${1:-}"
shift || true
EXTRA_ARGS=("$@")

# python from PYTHON if set, else the project's .venv (created if needed, as demo.sh does)
run() {
    if [ -z "${PY:-}" ]; then
        if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; else source scripts/venv.sh; fi
    fi
    echo "+ python $* ${EXTRA_ARGS[*]}"
    "$PY" "$@" "${EXTRA_ARGS[@]}"
}

# The recipes of script $1 by group: a `# ---- group ----` line starts a group, a
# `name)  # description` line is a recipe; the `groups` section (all, list) ends the listing.
list_recipes() {
    awk '
        /^# ---- groups/ { exit }
        /^# ---- end/ { next }
        /^# ---- / { sub(/^# ---- /, ""); sub(/ -+$/, ""); printf "%s%s:\n", (n++ ? "\n" : ""), $0; next }
        /^[a-z0-9_]+\)/ {
            name = $0; sub(/\).*/, "", name)
            desc = $0; if (!sub(/^[^#]*# */, "", desc)) desc = ""
            printf "  %-22s %s\n", name, desc
        }' "$1"
}
