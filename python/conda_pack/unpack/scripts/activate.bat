@REM Activate the environment this file belongs to:  C:\path\to\env\Scripts\activate.bat
@REM Leave it with:  deactivate
@REM Every line starts with @ so that the user's echo setting is neither used nor changed.
@REM What is set here must outlive the script: no setlocal, and the helper variables
@REM (_CONDA_PACK_ENV, _CONDA_PACK_HELD, _CONDA_PACK_FWD) are cleared. Blocks in ( ) are avoided: a PATH holding
@REM "Program Files (x86)" would end them early.

@for %%I in ("%~dp0..") do @set "_CONDA_PACK_ENV=%%~fI"
@if not defined CONDA_PREFIX @goto activate
@if /i "%CONDA_PREFIX%"=="%_CONDA_PACK_ENV%" @goto done
@REM deactivate.bat works for whichever environment is active, whatever activated it.
@call "%~dp0deactivate.bat"

:activate
@REM Unpacked here but never relocated (nobody ran conda-unpack): relocate it now, as its
@REM Python would on first start. The state names the prefix with forward slashes.
@if not exist "%~dp0conda-unpack.exe" @goto relocated
@set "_CONDA_PACK_HELD="
@if exist "%_CONDA_PACK_ENV%\conda-meta\.conda-unpack-prefix" @set /p _CONDA_PACK_HELD=<"%_CONDA_PACK_ENV%\conda-meta\.conda-unpack-prefix"
@set "_CONDA_PACK_FWD=%_CONDA_PACK_ENV:\=/%"
@if /i "%_CONDA_PACK_HELD%"=="%_CONDA_PACK_FWD%" @goto relocated
@"%~dp0conda-unpack.exe" --auto

:relocated
@set "_CONDA_PACK_HELD="
@set "_CONDA_PACK_FWD="
@set "CONDA_PREFIX=%_CONDA_PACK_ENV%"
@REM The folders conda puts on PATH for an environment (keep in step with deactivate.bat).
@set "PATH=%_CONDA_PACK_ENV%;%_CONDA_PACK_ENV%\Library\mingw-w64\bin;%_CONDA_PACK_ENV%\Library\usr\bin;%_CONDA_PACK_ENV%\Library\bin;%_CONDA_PACK_ENV%\Scripts;%_CONDA_PACK_ENV%\bin;%PATH%"
@REM cmd shows $P$G when PROMPT is not set; the saved prompt is what deactivate restores.
@if not defined PROMPT @set "PROMPT=$P$G"
@set "_CONDA_PACK_OLD_PROMPT=%PROMPT%"
@for %%I in ("%_CONDA_PACK_ENV%") do @set "PROMPT=(%%~nxI) %PROMPT%"
@REM The hooks run from their folder: a quoted "folder\*.bat" is not expanded by every
@REM cmd (Wine's is not).
@if not exist "%_CONDA_PACK_ENV%\etc\conda\activate.d\" @goto done
@pushd "%_CONDA_PACK_ENV%\etc\conda\activate.d"
@for %%F in (*.bat) do @call "%%~fF"
@popd

:done
@set "_CONDA_PACK_ENV="
@exit /b 0
