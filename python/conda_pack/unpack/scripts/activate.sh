# Activate the environment this file belongs to:  . /path/to/env/bin/activate
# For bash, zsh, ksh, dash and other POSIX shells. Undo with:  . deactivate
_conda_pack_activate() {
    # A sourced file learns its own path differently in each shell.
    _conda_pack_src=
    if [ -n "${BASH_VERSION:-}" ]; then
        eval '_conda_pack_src=${BASH_SOURCE[0]}'
    elif [ -n "${ZSH_VERSION:-}" ]; then
        eval '_conda_pack_src=${(%):-%x}'
    elif [ -n "${KSH_VERSION:-}" ]; then
        eval '_conda_pack_src=${.sh.file}' 2>/dev/null
    fi
    if [ -z "$_conda_pack_src" ]; then
        # dash and others: the file being sourced is one of the shell's open descriptors.
        for _conda_pack_fd in /proc/$$/fd/*; do
            _conda_pack_t=$(readlink "$_conda_pack_fd" 2>/dev/null) || continue
            case "$_conda_pack_t" in */bin/activate) _conda_pack_src=$_conda_pack_t ;; esac
        done
        if [ -z "$_conda_pack_src" ] && command -v lsof >/dev/null 2>&1; then
            _conda_pack_src=$(lsof -p $$ -Fn 2>/dev/null | sed -n 's/^n\(.*\/bin\/activate\)$/\1/p' | tail -n 1)
        fi
    fi
    if [ -z "$_conda_pack_src" ]; then
        echo "activate: cannot tell where this script is in this shell; use bash or zsh" >&2
        return 1
    fi
    _conda_pack_env=$(cd -- "$(dirname -- "$_conda_pack_src")/.." >/dev/null && pwd) || return 1

    if [ -n "${CONDA_PREFIX:-}" ]; then
        if [ "$CONDA_PREFIX" = "$_conda_pack_env" ]; then
            return 0
        fi
        # Leave the active environment first, if it can be left this way.
        if command -v deactivate >/dev/null 2>&1; then
            . deactivate >/dev/null 2>&1
        fi
    fi

    CONDA_PREFIX=$_conda_pack_env
    _CONDA_PACK_OLD_PS1=${PS1:-}
    PATH="$_conda_pack_env/bin:$PATH"
    PS1="($(basename -- "$_conda_pack_env")) ${PS1:-}"
    export CONDA_PREFIX _CONDA_PACK_OLD_PS1 PATH
    if [ -n "${ZSH_VERSION:-}" ]; then rehash; else hash -r 2>/dev/null; fi

    for _conda_pack_f in "$_conda_pack_env"/etc/conda/activate.d/*.sh; do
        if [ -f "$_conda_pack_f" ]; then . "$_conda_pack_f"; fi
    done
    return 0
}
_conda_pack_activate
_conda_pack_status=$?
unset -f _conda_pack_activate
unset _conda_pack_src _conda_pack_fd _conda_pack_t _conda_pack_env _conda_pack_f
[ "$_conda_pack_status" -eq 0 ] && unset _conda_pack_status
