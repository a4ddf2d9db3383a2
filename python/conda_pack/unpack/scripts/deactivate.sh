# Leave the environment entered with bin/activate:  . deactivate
# Works on whatever $CONDA_PREFIX names; safe under `set -eu`; leaves no helpers behind.

_conda_pack_deactivate() {
    if [ -z "${CONDA_PREFIX:-}" ]; then
        return 0
    fi
    # See activate: zsh must be told that a pattern may match nothing.
    if [ -n "${ZSH_VERSION:-}" ] && eval '[[ -o nomatch ]]'; then
        eval 'set -- "$CONDA_PREFIX"/etc/conda/deactivate.d/*.sh(N)'
    else
        set -- "$CONDA_PREFIX"/etc/conda/deactivate.d/*.sh
    fi
    for _conda_pack_hook in "$@"; do
        if [ -f "$_conda_pack_hook" ]; then . "$_conda_pack_hook"; fi
    done

    # Drop every "$CONDA_PREFIX/bin" from PATH, keeping all other entries (empty ones too)
    # in order. Plain POSIX expansions: dash has no ${var//}.
    _conda_pack_rest=$PATH:
    _conda_pack_keep=
    while [ -n "$_conda_pack_rest" ]; do
        _conda_pack_dir=${_conda_pack_rest%%:*}
        _conda_pack_rest=${_conda_pack_rest#*:}
        if [ "$_conda_pack_dir" != "$CONDA_PREFIX/bin" ]; then
            _conda_pack_keep=$_conda_pack_keep:$_conda_pack_dir
        fi
    done
    PATH=${_conda_pack_keep#:}
    export PATH
    hash -r 2>/dev/null || :

    if [ -n "${_CONDA_PACK_OLD_PS1+set}" ]; then
        PS1=$_CONDA_PACK_OLD_PS1
        unset _CONDA_PACK_OLD_PS1
    fi
    unset CONDA_PREFIX
    return 0
}

_conda_pack_deactivate
unset -f _conda_pack_deactivate
unset _conda_pack_hook _conda_pack_rest _conda_pack_keep _conda_pack_dir
