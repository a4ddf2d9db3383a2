# Activate the environment this file belongs to:  . /path/to/env/bin/activate.ps1
# (on Windows:  C:\path\to\env\Scripts\activate.ps1). Leave it with:  deactivate
# Environment variables belong to the process and the functions defined here are global,
# so running the file works as well as dot-sourcing it; its helper variables stay private.

& {
    param([string] $Here)
    if (-not $Here) {
        Write-Error 'activate.ps1: run or dot-source the file itself (PowerShell 3 or later)'
        return
    }
    $prefix = Split-Path -Parent $Here
    $deactivateScript = Join-Path $Here 'deactivate.ps1'
    if ($env:CONDA_PREFIX) {
        if ($env:CONDA_PREFIX -eq $prefix) { return }
        # deactivate.ps1 works for whichever environment is active, whatever activated it.
        & $deactivateScript
    }

    # The folders conda puts on PATH for an environment (keep in step with deactivate.ps1).
    if ([IO.Path]::DirectorySeparatorChar -eq '\') {
        $dirs = @($prefix) + @('Library\mingw-w64\bin', 'Library\usr\bin', 'Library\bin',
            'Scripts', 'bin' | ForEach-Object { Join-Path $prefix $_ })
    } else {
        $dirs = @(Join-Path $prefix 'bin')
    }
    # Unpacked here but never relocated (nobody ran conda-unpack, as on cluster nodes):
    # relocate it now, as its Python would on first start; a read-only one is left alone,
    # with one line saying so. The state names the prefix with forward slashes on Windows.
    $unpack = if ([IO.Path]::DirectorySeparatorChar -eq '\') {
        Join-Path $Here 'conda-unpack.exe' } else { Join-Path $Here 'conda-unpack' }
    if (Test-Path -LiteralPath $unpack -PathType Leaf) {
        $state = Join-Path (Join-Path $prefix 'conda-meta') '.conda-unpack-prefix'
        $held = ''
        if (Test-Path -LiteralPath $state -PathType Leaf) {
            $held = [string](Get-Content -LiteralPath $state -TotalCount 1)
        }
        if ($held -ne $prefix -and $held -ne $prefix.Replace('\', '/')) { & $unpack --auto }
    }

    $env:CONDA_PREFIX = $prefix
    $env:PATH = (@($dirs) + @($env:PATH | Where-Object { $_ })) -join [IO.Path]::PathSeparator

    if (Test-Path -Path Function:\prompt) {
        $global:_CONDA_PACK_OLD_PROMPT = $function:prompt
        Set-Item -Path Function:global:prompt -Value {
            '(' + (Split-Path -Leaf $env:CONDA_PREFIX) + ') ' + (& $global:_CONDA_PACK_OLD_PROMPT)
        }
    }
    # A closure: the function remembers where deactivate.ps1 is.
    Set-Item -Path Function:global:deactivate -Value ({ & $deactivateScript }.GetNewClosure())

    $hooks = Join-Path (Join-Path (Join-Path $prefix 'etc') 'conda') 'activate.d'
    if (Test-Path -LiteralPath $hooks -PathType Container) {
        # -Filter *.ps1 would also match *.ps1xml on Windows.
        Get-ChildItem -LiteralPath $hooks | Where-Object { $_.Extension -eq '.ps1' } |
            Sort-Object Name | ForEach-Object { . $_.FullName }
    }
} $PSScriptRoot
