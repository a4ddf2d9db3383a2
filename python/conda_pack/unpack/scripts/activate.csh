# Activate the environment this file belongs to:  source /path/to/env/bin/activate.csh
# For csh and tcsh. Leave it with:  deactivate   (or: source /path/to/env/bin/deactivate.csh)

# csh cannot tell a sourced file its own name, but keeps the file open while reading it:
# find it among the shell's open descriptors (/proc on Linux, else lsof). Their targets
# are physical paths, so the answer is the same however the environment was reached.
set _conda_pack_src = ""
if ( -d /proc/$$/fd ) then
    foreach _conda_pack_fd ( /proc/$$/fd/* )
        set _conda_pack_t = "`readlink $_conda_pack_fd`"
        if ( "$_conda_pack_t" =~ */bin/activate.csh ) set _conda_pack_src = "$_conda_pack_t"
    end
endif
if ( "$_conda_pack_src" == "" ) then
    set _conda_pack_src = "`lsof -p $$ -Fn |& grep /bin/activate.csh | tail -n 1 | cut -c2-`"
endif

if ( "$_conda_pack_src" == "" ) then
    echo "activate.csh: cannot find this script's location"
else
    set _conda_pack_env = "$_conda_pack_src:h:h"
    set _conda_pack_go = 1
    if ( $?CONDA_PREFIX ) then
        if ( "$CONDA_PREFIX" == "$_conda_pack_env" ) then
            set _conda_pack_go = 0
        else
            # Our deactivate works for whichever environment is active.
            source "$_conda_pack_env/bin/deactivate.csh"
        endif
    endif
    if ( $_conda_pack_go ) then
        # Unpacked here but never relocated (nobody ran conda-unpack, as on cluster nodes):
        # relocate it now, as its Python would on first start; a read-only one is left
        # alone, with one line saying so. csh cannot read a line of a file whose path may
        # hold blanks without splitting it, so conda-unpack itself looks (a Python start).
        if ( -f "$_conda_pack_env/bin/conda-unpack" ) "$_conda_pack_env/bin/conda-unpack" --auto
        setenv CONDA_PREFIX "$_conda_pack_env"
        if ( $?PATH ) then
            setenv PATH "$_conda_pack_env/bin:$PATH"
        else
            setenv PATH "$_conda_pack_env/bin"
        endif
        if ( $?prompt ) then
            set _CONDA_PACK_OLD_PROMPT = "$prompt:q"
            set prompt = "($_conda_pack_env:t) $prompt:q"
        endif
        alias deactivate 'source "$CONDA_PREFIX/bin/deactivate.csh"'
        # The directory itself is listed too (it is never -f): csh fails on a list
        # in which no pattern matches anything.
        set _conda_pack_t = "$_conda_pack_env/etc/conda/activate.d"
        if ( -d "$_conda_pack_t" ) then
            foreach _conda_pack_f ( "$_conda_pack_t"/*.csh "$_conda_pack_t:h"/activate.[d] )
                if ( -f "$_conda_pack_f" ) source "$_conda_pack_f"
            end
        endif
        rehash
    endif
endif
unset _conda_pack_src _conda_pack_fd _conda_pack_t _conda_pack_env _conda_pack_go _conda_pack_f
