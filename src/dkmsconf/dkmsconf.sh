# shellcheck shell=bash
# The one evaluator of dkms.conf files, for planning (src/dkmsconf/) and for status
# (src/status/mod.rs, which appends src/status/status.sh). dkms.conf is a bash script that dkms sources, so
# it is sourced here too, per kernel, in a subshell, with the variables dkms sets.
#
# Arguments: EMIT UNSET DKMS_TREE SOURCE_TREE INSTALL_TREE, then units, each a word and its fields:
#   check ID FILE
#       FILE's syntax, checked without running any of it. Record: @check ID MESSAGE (MESSAGE is
#       empty when the file parses). The `source` units of an ID whose check failed are dropped.
#   source ID KERNELVER ARCH KERNEL_SOURCE_DIR MODULE MODULE_VERSION N FILE1 .. FILEN
#       In a subshell: unset the names in UNSET, set what dkms sets, source the files that exist,
#       then run the function EMIT, which writes its fields with _dh_field. Records: @source ID
#       KERNELVER, EMIT's fields, @done (only when the files did not end the subshell), then
#       @output TEXT (what the files printed on stdout and stderr).
#   group N, then N source units of one file each
#       The same records, but the files are sourced one after another in one subshell, the
#       names in UNSET unset before each: for files that only assign those names (the caller
#       knows, see src/dkmsconf/once.rs `shareable`), which cannot print, fail or exit. A
#       subshell for all of them instead of one each.
# Records go to fd 3, every field NUL-terminated. The files are sourced with fd 3 closed, so no
# dkms.conf can write into the record stream; the evaluator's own names start with _dh_.

exec 3>&1 1>/dev/null </dev/null

_dh_record() {
    printf '%s\0' "$@" >&3
}

# An EMIT function's fields: marked with a leading `=`, so that no value can pass for a record.
_dh_field() {
    printf '=%s\0' "$@" >&3
}

# The raw directives a plan needs (the names unset before sourcing, $_dh_unset): for each name,
# every index and value of its array (a scalar is index 0).
_dh_emit_directives() {
    # The names are split on bash's own IFS, whatever the file set it to.
    local _dh_n _dh_i IFS=$' \t\n'
    # shellcheck disable=SC2154 # set from the arguments below, before any file is sourced
    for _dh_n in $_dh_unset; do
        local -n _dh_v=$_dh_n
        for _dh_i in "${!_dh_v[@]}"; do
            _dh_field "$_dh_n" "$_dh_i" "${_dh_v[$_dh_i]}"
        done
        unset -n _dh_v
    done
}

# Sets _dh_syntax to why FILE ($1) cannot be sourced, or to nothing. The text is parsed under
# `set -n` (read, never run) in a subshell that cannot reach the record stream; only when that
# fails does a `bash -n` run, for bash's own message naming the file and line.
_dh_check() {
    local _dh_src=
    _dh_syntax=
    if [[ ! -r $1 ]]; then
        _dh_syntax="$1: cannot be read"
        return
    fi
    IFS= read -r -d '' _dh_src <"$1"
    if ! (
        exec 3>&-
        eval "set -n
$_dh_src"
    ) 2>/dev/null; then
        _dh_syntax=$(LC_ALL=C bash -n "$1" 2>&1) && _dh_syntax=
    fi
}

# Reads the source unit at index $1 of _dh_args: its id, context and files, and in _dh_next
# the index after it.
_dh_unit() {
    local _dh_i
    _dh_id=${_dh_args[$1 + 1]}
    # Element by element: bash walks an array from its start for a slice ("${a[@]:i:n}"),
    # but reaches the element after the last one read at once.
    _dh_ctx=()
    for ((_dh_i = 2; _dh_i < 7; _dh_i++)); do
        _dh_ctx+=("${_dh_args[$1 + _dh_i]}")
    done
    _dh_count=${_dh_args[$1 + 7]}
    _dh_files=()
    for ((_dh_i = 0; _dh_i < _dh_count; _dh_i++)); do
        _dh_files+=("${_dh_args[$1 + 8 + _dh_i]}")
    done
    _dh_next=$(($1 + 8 + _dh_count))
}

# Sets what dkms sets for the unit read last (_dh_unit), the directives unset.
_dh_context() {
    # shellcheck disable=SC2086 # a list of names
    unset $_dh_unset
    # shellcheck disable=SC2034
    kernelver=${_dh_ctx[0]} arch=${_dh_ctx[1]} kernel_source_dir=${_dh_ctx[2]}
    # shellcheck disable=SC2034
    module=${_dh_ctx[3]} module_version=${_dh_ctx[4]}
}

# The group of $2 source units from index $1 (see `group` above), in one subshell.
_dh_group() (
    _dh_at=$1
    for ((_dh_g = 0; _dh_g < $2; _dh_g++)); do
        _dh_unit "$_dh_at"
        _dh_at=$_dh_next
        _dh_record @source "$_dh_id" "${_dh_ctx[0]}"
        _dh_context
        # shellcheck disable=SC1090 # the files are the input
        . "${_dh_files[0]}" 3>&- >/dev/null 2>&1
        "$_dh_emit"
        _dh_record @done
        _dh_record @output ""
    done
)

# dkms_tree, source_tree, install_tree and the variables set below are read by the sourced files.
# shellcheck disable=SC2034
_dh_emit=$1 _dh_unset=$2 dkms_tree=$3 source_tree=$4 install_tree=$5
shift 5
# Indexing an array, not shifting "$@" (each shift copies every remaining argument).
_dh_args=("$@")
set --
declare -A _dh_broken=()
_dh_n=${#_dh_args[@]} _dh_a=0
while ((_dh_a < _dh_n)); do
    case ${_dh_args[_dh_a]} in
    check)
        _dh_id=${_dh_args[_dh_a + 1]}
        _dh_check "${_dh_args[_dh_a + 2]}"
        ((_dh_a += 3))
        [[ $_dh_syntax ]] && _dh_broken[$_dh_id]=1
        _dh_record @check "$_dh_id" "$_dh_syntax"
        ;;
    source)
        _dh_unit "$_dh_a"
        _dh_a=$_dh_next
        [[ ${_dh_broken[$_dh_id]-} ]] && continue
        _dh_record @source "$_dh_id" "${_dh_ctx[0]}"
        _dh_out=$(
            _dh_context
            for _dh_f in "${_dh_files[@]}"; do
                # shellcheck disable=SC1090 # the files are the input
                [[ -e $_dh_f ]] && . "$_dh_f" 3>&- 2>&1
            done
            "$_dh_emit"
            _dh_record @done
        )
        _dh_record @output "$_dh_out"
        ;;
    group)
        _dh_g0=$((_dh_a + 2)) _dh_gn=${_dh_args[_dh_a + 1]}
        _dh_a=$_dh_g0
        for ((_dh_g = 0; _dh_g < _dh_gn; _dh_g++)); do
            _dh_a=$((_dh_a + 8 + _dh_args[_dh_a + 7]))
        done
        _dh_group "$_dh_g0" "$_dh_gn"
        ;;
    *)
        echo "dkmsconf.sh: unknown unit ${_dh_args[_dh_a]}" >&2
        exit 2
        ;;
    esac
done
