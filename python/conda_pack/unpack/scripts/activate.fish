# Activate the environment this file belongs to:  source /path/to/env/bin/activate.fish
# Undo with:  deactivate
set -l _conda_pack_env (builtin realpath (dirname (status --current-filename))/..)

if set -q CONDA_PREFIX
    if test "$CONDA_PREFIX" = "$_conda_pack_env"
        return 0
    end
    if functions -q deactivate
        deactivate
    end
end

function deactivate -d "Leave the environment activated by activate.fish"
    if not set -q CONDA_PREFIX
        return 0
    end
    for f in $CONDA_PREFIX/etc/conda/deactivate.d/*.fish
        source $f
    end
    set -l keep
    for d in $PATH
        if test "$d" != "$CONDA_PREFIX/bin"
            set -a keep $d
        end
    end
    set -gx PATH $keep
    if functions -q _conda_pack_old_prompt
        functions -e fish_prompt
        functions -c _conda_pack_old_prompt fish_prompt
        functions -e _conda_pack_old_prompt
    end
    set -e CONDA_PREFIX
    functions -e deactivate
end

set -gx CONDA_PREFIX $_conda_pack_env
set -gx PATH $_conda_pack_env/bin $PATH

if functions -q fish_prompt
    functions -c fish_prompt _conda_pack_old_prompt
    function fish_prompt
        printf "(%s) " (basename $CONDA_PREFIX)
        _conda_pack_old_prompt
    end
end

# POSIX activation scripts cannot change fish's environment; run them for their other
# effects, as conda-pack always has, and source the fish ones.
for f in $_conda_pack_env/etc/conda/activate.d/*.sh
    sh $f
end
for f in $_conda_pack_env/etc/conda/activate.d/*.fish
    source $f
end
