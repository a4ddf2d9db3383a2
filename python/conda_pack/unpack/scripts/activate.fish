# Activate the environment this file belongs to:  source /path/to/env/bin/activate.fish
# Leave it with:  deactivate

function deactivate -d "Leave the environment entered with activate.fish"
    # activate.fish passes --keep to leave another environment without losing this function.
    set -q CONDA_PREFIX; or return 0
    for hook in $CONDA_PREFIX/etc/conda/deactivate.d/*.fish
        source $hook
    end
    # Every "$CONDA_PREFIX/bin" goes; all other entries stay, in order.
    set -l keep
    for dir in $PATH
        if test "$dir" != "$CONDA_PREFIX/bin"
            set -a keep $dir
        end
    end
    set -gx PATH $keep
    if functions -q _conda_pack_fish_prompt
        functions -e fish_prompt
        functions -c _conda_pack_fish_prompt fish_prompt
        functions -e _conda_pack_fish_prompt
    end
    set -e CONDA_PREFIX
    if test "$argv[1]" != --keep
        functions -e deactivate
    end
end

# The physical path of the environment, even when reached through links.
set -l _conda_pack_env (builtin realpath (status --current-filename))
set _conda_pack_env (string replace -r '/[^/]*/[^/]*$' '' -- $_conda_pack_env)

if test "$CONDA_PREFIX" = "$_conda_pack_env"
    exit 0 # already active: `exit` in a sourced file ends only that file
end
# The deactivate above works for whichever environment is active, whatever activated it.
deactivate --keep

# Unpacked here but never relocated (nobody ran conda-unpack, as on cluster nodes): relocate
# it now, as its Python would on first start; a read-only one is left alone, with one line.
if test -f "$_conda_pack_env/bin/conda-unpack"
    set -l held ""
    if test -f "$_conda_pack_env/conda-meta/.conda-unpack-prefix"
        read held <"$_conda_pack_env/conda-meta/.conda-unpack-prefix"
    end
    if test "$held" != "$_conda_pack_env"
        "$_conda_pack_env/bin/conda-unpack" --auto
    end
end

set -gx CONDA_PREFIX $_conda_pack_env
set -gx PATH $_conda_pack_env/bin $PATH

if functions -q fish_prompt
    functions -c fish_prompt _conda_pack_fish_prompt
    function fish_prompt
        # The old prompt runs first, so that it still sees the last command's $status.
        set -l old (_conda_pack_fish_prompt)
        printf '(%s) ' (string replace -r '.*/' '' -- $CONDA_PREFIX)
        string join \n -- $old
    end
end

for _conda_pack_hook in $_conda_pack_env/etc/conda/activate.d/*.fish
    source $_conda_pack_hook
end
set -e _conda_pack_hook
