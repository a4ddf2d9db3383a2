# Leave the environment entered with activate.csh:  deactivate
# (or: source /path/to/env/bin/deactivate.csh). Works on whatever $CONDA_PREFIX names.

if ( $?CONDA_PREFIX ) then
    set _conda_pack_d = "$CONDA_PREFIX/etc/conda/deactivate.d"
    if ( -d "$_conda_pack_d" ) then
        # The directory itself is listed too: see activate.csh.
        foreach _conda_pack_f ( "$_conda_pack_d"/*.csh "$_conda_pack_d:h"/deactivate.[d] )
            if ( -f "$_conda_pack_f" ) source "$_conda_pack_f"
        end
    endif
    # Every "$CONDA_PREFIX/bin" goes; other entries stay as they are, in order. This is
    # done on the string: csh's $path list would turn empty entries into ".".
    setenv PATH "`printenv PATH | tr : '\n' | grep -vxF -e '$CONDA_PREFIX/bin' | paste -sd : -`"
    rehash
    if ( $?_CONDA_PACK_OLD_PROMPT ) then
        set prompt = "$_CONDA_PACK_OLD_PROMPT:q"
        unset _CONDA_PACK_OLD_PROMPT
    endif
    unsetenv CONDA_PREFIX
    unset _conda_pack_d _conda_pack_f
endif
unalias deactivate
