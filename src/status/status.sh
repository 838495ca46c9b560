# shellcheck shell=bash
# The directive emitter of `status` (src/status/mod.rs), put in front of the evaluator
# (src/dkmsconf/dkmsconf.sh): after a pair's dkms.conf and its /etc/dkms overrides are sourced,
# _dh_emit_status writes the distribution dkms installs for, then every directive as it is
# (_dh_emit_directives). What they mean (defaults, the module records, what is refused,
# BUILD_EXCLUSIVE_*) is decided in Rust, by the rules the planner uses (src/dkmsconf/rules.rs).
# Environment: _dh_os_release (where dkms reads the distribution, which decides where modules
# are installed).

# Read once per evaluator, in a subshell, as dkms reads it: os-release sourced.
_dh_distro=$(
    osrel=${_dh_os_release-}
    [[ -e $osrel ]] || osrel=/usr/lib/os-release
    [[ -e $osrel ]] || exit
    # shellcheck disable=SC1090
    . "$osrel"
    if [[ $ID = ubuntu ]]; then
        echo "$ID"
    elif [[ ${#ID_LIKE[@]} != 0 ]]; then
        echo "${ID_LIKE[0]}"
    else
        echo "$ID"
    fi
)

_dh_emit_status() {
    _dh_field "$_dh_distro"
    _dh_emit_directives
}
