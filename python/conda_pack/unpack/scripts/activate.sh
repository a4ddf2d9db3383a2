# Activate the environment this file belongs to:  . /path/to/env/bin/activate
# For bash, zsh, ksh, mksh, dash and other POSIX shells. Leave it with:  . deactivate
# Safe under `set -eu`; leaves no helper variables or functions behind.

_conda_pack_activate() {
    # Which file is being sourced? bash, zsh and ksh93 say so; dash, mksh and others keep
    # it open while reading it, so it is among their open descriptors (/proc, else lsof).
    _conda_pack_src=
    if [ -n "${BASH_VERSION:-}" ]; then
        eval '_conda_pack_src=${BASH_SOURCE[0]}'
    elif [ -n "${ZSH_VERSION:-}" ]; then
        eval '_conda_pack_src=${(%):-%x}'
    else
        case ${KSH_VERSION:-} in
            Version*) eval '_conda_pack_src=${.sh.file}' ;; # ksh93; mksh says "@(#)MIRBSD KSH"
        esac
    fi
    if [ -z "$_conda_pack_src" ] && [ -d "/proc/$$/fd" ]; then
        for _conda_pack_t in /proc/$$/fd/*; do
            _conda_pack_t=$(readlink "$_conda_pack_t" 2>/dev/null) || continue
            case $_conda_pack_t in */bin/activate) _conda_pack_src=$_conda_pack_t ;; esac
        done
    fi
    if [ -z "$_conda_pack_src" ] && command -v lsof >/dev/null 2>&1; then
        _conda_pack_src=$(lsof -p $$ -Fn 2>/dev/null | sed -n 's|^n\(/.*/bin/activate\)$|\1|p' |
            tail -n 1)
    fi
    if [ -z "$_conda_pack_src" ]; then
        echo "activate: cannot find this script's location; use:  . /path/to/env/bin/activate" >&2
        return 1
    fi
    # The script itself may be a symbolic link placed elsewhere: find the real one.
    case $_conda_pack_src in */*) ;; *) _conda_pack_src=./$_conda_pack_src ;; esac
    while [ -h "$_conda_pack_src" ]; do
        _conda_pack_t=$(readlink "$_conda_pack_src") || break
        case $_conda_pack_t in
            /*) _conda_pack_src=$_conda_pack_t ;;
            *) _conda_pack_src=${_conda_pack_src%/*}/$_conda_pack_t ;;
        esac
    done
    # The physical path: the same answer in every shell, however the env was reached.
    _conda_pack_env=$(CDPATH='' cd -P -- "${_conda_pack_src%/*}/.." >/dev/null 2>&1 && pwd -P)
    if [ -z "$_conda_pack_env" ]; then
        echo "activate: cannot enter ${_conda_pack_src%/*}/.." >&2
        return 1
    fi

    if [ -n "${CONDA_PREFIX:-}" ]; then
        if [ "$CONDA_PREFIX" = "$_conda_pack_env" ]; then
            return 0
        fi
        # Our deactivate works for whichever environment is active, whatever activated it.
        . "$_conda_pack_env/bin/deactivate"
    fi

    # Unpacked here but never relocated (nobody ran conda-unpack, as on cluster nodes):
    # relocate it now, as its Python would on first start. conda-unpack --auto leaves a
    # read-only environment alone, with one line saying so, and never fails activation.
    if [ -f "$_conda_pack_env/bin/conda-unpack" ]; then
        _conda_pack_t=
        if [ -f "$_conda_pack_env/conda-meta/.conda-unpack-prefix" ]; then
            IFS= read -r _conda_pack_t <"$_conda_pack_env/conda-meta/.conda-unpack-prefix" || :
        fi
        if [ "$_conda_pack_t" != "$_conda_pack_env" ]; then
            "$_conda_pack_env/bin/conda-unpack" --auto || :
        fi
    fi

    CONDA_PREFIX=$_conda_pack_env
    export CONDA_PREFIX
    PATH=$_conda_pack_env/bin${PATH:+:$PATH}
    export PATH
    # Only a prompt that exists is prefixed. The saved one is not exported: a child shell
    # has its own prompt, which deactivate must leave alone.
    if [ -n "${PS1+set}" ]; then
        _CONDA_PACK_OLD_PS1=$PS1
        PS1="(${_conda_pack_env##*/}) $PS1"
    fi
    hash -r 2>/dev/null || :

    # zsh errors on a pattern matching nothing unless asked not to (N); sh-emulating zsh,
    # like every other shell, leaves it unexpanded, which the -f test skips.
    if [ -n "${ZSH_VERSION:-}" ] && eval '[[ -o nomatch ]]'; then
        eval 'set -- "$_conda_pack_env"/etc/conda/activate.d/*.sh(N)'
    else
        set -- "$_conda_pack_env"/etc/conda/activate.d/*.sh
    fi
    for _conda_pack_f in "$@"; do
        if [ -f "$_conda_pack_f" ]; then . "$_conda_pack_f"; fi
    done
    return 0
}

# `if` keeps a failure from ending a `set -e` shell half-way; the status is returned below.
if _conda_pack_activate; then _conda_pack_rc=0; else _conda_pack_rc=1; fi
unset -f _conda_pack_activate
unset _conda_pack_src _conda_pack_t _conda_pack_env _conda_pack_f
if [ "$_conda_pack_rc" = 0 ]; then
    unset _conda_pack_rc
else
    unset _conda_pack_rc
    return 1
fi
