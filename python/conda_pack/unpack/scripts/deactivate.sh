# Deactivate the environment activated with bin/activate:  . deactivate
_conda_pack_deactivate() {
    if [ -z "${CONDA_PREFIX:-}" ]; then
        return 0
    fi
    for _conda_pack_f in "$CONDA_PREFIX"/etc/conda/deactivate.d/*.sh; do
        if [ -f "$_conda_pack_f" ]; then . "$_conda_pack_f"; fi
    done
    # Drop every "$CONDA_PREFIX/bin" from PATH (POSIX expansions only: dash has no ${//}).
    _conda_pack_rest="$PATH:"
    _conda_pack_new=
    while [ -n "$_conda_pack_rest" ]; do
        _conda_pack_dir=${_conda_pack_rest%%:*}
        _conda_pack_rest=${_conda_pack_rest#*:}
        if [ "$_conda_pack_dir" != "$CONDA_PREFIX/bin" ]; then
            _conda_pack_new=${_conda_pack_new:+$_conda_pack_new:}$_conda_pack_dir
        fi
    done
    PATH=$_conda_pack_new
    export PATH
    if [ -n "${_CONDA_PACK_OLD_PS1+set}" ]; then
        PS1=$_CONDA_PACK_OLD_PS1
    fi
    unset CONDA_PREFIX _CONDA_PACK_OLD_PS1
    if [ -n "${ZSH_VERSION:-}" ]; then rehash; else hash -r 2>/dev/null; fi
    return 0
}
_conda_pack_deactivate
unset -f _conda_pack_deactivate
unset _conda_pack_f _conda_pack_rest _conda_pack_new _conda_pack_dir
