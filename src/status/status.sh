# shellcheck shell=bash
# What `dkms status` derives from a dkms.conf, as _dh_emit_status for the evaluator in
# src/dkmsconf.sh (appended after this file). Environment: _dh_flags (S: sparse module arrays,
# dkms 3.2.2+; P: per-module BUILD_EXCLUSIVE_*, 3.3.0+), _dh_os_release (where dkms reads the
# distribution, which decides where modules are installed), ADDON_MODULES_DIR.
# Fields: valid, count, then per module: name, location 1, location 2, excluded.
# kernelver, arch and kernel_source_dir are set by the evaluator before it calls _dh_emit_status.
# shellcheck disable=SC2154
: "${_dh_flags=}"

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
_dh_addon=${ADDON_MODULES_DIR-}

# dkms's VER: every run of digits padded to three, so that plain string order is version order.
_dh_ver() {
    local s=$1 out='' run
    while [[ $s =~ ^([^0-9]*)([0-9]+)(.*)$ ]]; do
        run=${BASH_REMATCH[2]}
        while ((${#run} < 3)); do run=0$run; done
        out+=${BASH_REMATCH[1]}$run
        s=${BASH_REMATCH[3]}
    done
    printf '%s' "$out$s"
}

# Whether BUILD_EXCLUSIVE_* (global, or of module index $1) rule the module out for this kernel.
_dh_excluded() {
    local i=$1 c g ek emin emax ea ec
    for g in "" "[$i]"; do
        eval "ek=\${BUILD_EXCLUSIVE_KERNEL$g-} emin=\${BUILD_EXCLUSIVE_KERNEL_MIN$g-}"
        eval "emax=\${BUILD_EXCLUSIVE_KERNEL_MAX$g-} ea=\${BUILD_EXCLUSIVE_ARCH$g-}"
        eval "ec=\${BUILD_EXCLUSIVE_CONFIG$g-}"
        [[ $ek && ! $kernelver =~ $ek ]] && return 0
        [[ $emin && "$(_dh_ver "$kernelver")" < "$(_dh_ver "$emin")" ]] && return 0
        [[ $emax && "$(_dh_ver "$kernelver")" > "$(_dh_ver "$emax")" ]] && return 0
        [[ $ea && ! $arch =~ $ea ]] && return 0
        if [[ $ec && -e $_dh_kernel_config ]]; then
            for c in $ec; do
                case $c in
                !*) grep -q "^${c#!}=[ym]" "$_dh_kernel_config" && return 0 ;;
                *) grep -q "^$c=[ym]" "$_dh_kernel_config" || return 0 ;;
                esac
            done
        fi
    done
    return 1
}

_dh_emit_status() {
    local valid=1 count=0 single i c b d l loc other ex out=()
    _dh_kernel_config=$kernel_source_dir/.config
    [[ $_dh_flags = *P* && -e $kernel_source_dir/include/config/auto.conf ]] &&
        _dh_kernel_config=$kernel_source_dir/include/config/auto.conf
    if [[ $_dh_flags = *S* ]]; then
        # 3.2.2 strips one trailing CR from every value (safe_source's `%$CR`), so a dkms.conf
        # with CRLF line endings reads as its LF twin; 3.0.10 keeps the CRs.
        local _dh_n _dh_i
        for _dh_n in $_dh_unset; do
            local -n _dh_crv=$_dh_n
            for _dh_i in "${!_dh_crv[@]}"; do
                _dh_crv[_dh_i]=${_dh_crv[_dh_i]%$'\r'}
            done
            unset -n _dh_crv
        done
    fi
    [[ ${PACKAGE_NAME-} ]] || valid=0
    [[ ${PACKAGE_VERSION-} ]] || valid=0
    if [[ $_dh_flags = *S* ]]; then
        count=-1
        for i in "${!BUILT_MODULE_NAME[@]}" "${!BUILT_MODULE_LOCATION[@]}" \
            "${!DEST_MODULE_NAME[@]}" "${!DEST_MODULE_LOCATION[@]}"; do
            ((i > count)) && count=$i
        done
        count=$((count + 1))
        single=$((count == 1))
    else
        for c in ${#BUILT_MODULE_NAME[@]} ${#BUILT_MODULE_LOCATION[@]} \
            ${#DEST_MODULE_NAME[@]} ${#DEST_MODULE_LOCATION[@]}; do
            ((c > count)) && count=$c
        done
        single=$((${#DEST_MODULE_LOCATION[@]} == 1))
    fi
    ((${#DEST_MODULE_LOCATION[@]} == 0 && count == 0)) && valid=0
    [[ $_dh_flags = *P* && ${OBSOLETE_BY-} && ! ${BUILD_EXCLUSIVE_KERNEL_MAX-} ]] &&
        BUILD_EXCLUSIVE_KERNEL_MAX=$OBSOLETE_BY
    for ((i = 0; i < count; i++)); do
        b=${BUILT_MODULE_NAME[i]-} d=${DEST_MODULE_NAME[i]-} l=${DEST_MODULE_LOCATION[i]-}
        [[ ! $b ]] && ((single)) && b=${PACKAGE_NAME-}
        [[ $d ]] || d=$b
        [[ $b ]] || valid=0
        case $b in *.o | *.ko) valid=0 ;; esac
        case $d in *.o | *.ko) valid=0 ;; esac
        case $l in /kernel* | /updates* | /extra*) ;; *) valid=0 ;; esac
        if [[ $_dh_addon ]]; then
            loc=/$_dh_addon
        else
            case $_dh_distro in
            fedora* | centos* | rhel* | ovm*) loc=/extra ;;
            sles* | suse* | opensuse*) loc=/updates ;;
            debian* | ubuntu* | arch*) loc=/updates/dkms ;;
            *) loc=$l ;;
            esac
        fi
        other=''
        [[ $l != "$loc" ]] && other=$l
        ex=0
        [[ $_dh_flags = *P* ]] && _dh_excluded "$i" && ex=1
        out+=("$d" "$loc" "$other" "$ex")
    done
    _dh_field "$valid" "$count" "${out[@]}"
}
