# Leave the environment entered with activate.ps1:  deactivate   (or run this file)
# Works on whatever $env:CONDA_PREFIX names.

& {
    $prefix = $env:CONDA_PREFIX
    if (-not $prefix) { return }

    $hooks = Join-Path (Join-Path (Join-Path $prefix 'etc') 'conda') 'deactivate.d'
    if (Test-Path -LiteralPath $hooks -PathType Container) {
        Get-ChildItem -LiteralPath $hooks | Where-Object { $_.Extension -eq '.ps1' } |
            Sort-Object Name | ForEach-Object { . $_.FullName }
    }

    # Drop every occurrence of the environment's folders (see activate.ps1) from PATH; other
    # entries, empty ones included, stay in order. Windows compares paths ignoring case.
    $windows = [IO.Path]::DirectorySeparatorChar -eq '\'
    if ($windows) {
        $dirs = @($prefix) + @('Library\mingw-w64\bin', 'Library\usr\bin', 'Library\bin',
            'Scripts', 'bin' | ForEach-Object { Join-Path $prefix $_ })
    } else {
        $dirs = @(Join-Path $prefix 'bin')
    }
    $sep = [IO.Path]::PathSeparator
    $keep = foreach ($entry in "$env:PATH".Split($sep)) {
        if ($windows) {
            if ($dirs -notcontains $entry) { $entry }
        } elseif ($dirs -cnotcontains $entry) {
            $entry
        }
    }
    $env:PATH = @($keep) -join $sep

    $old = Get-Variable -Name _CONDA_PACK_OLD_PROMPT -Scope Global -ValueOnly `
        -ErrorAction SilentlyContinue
    if ($null -ne $old) {
        Set-Item -Path Function:global:prompt -Value $old
        Remove-Variable -Name _CONDA_PACK_OLD_PROMPT -Scope Global
    }
    Remove-Item -Path Env:\CONDA_PREFIX
    Remove-Item -Path Function:global:deactivate -ErrorAction SilentlyContinue
}
