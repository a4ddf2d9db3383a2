@REM Leave the environment entered with activate.bat:  deactivate
@REM Works on whatever %CONDA_PREFIX% names. See activate.bat for the @ and the lack of
@REM setlocal; the helper variables _CONDA_PACK_* are cleared at the end.

@if not defined CONDA_PREFIX @exit /b 0
@REM The hooks run from their folder: a quoted "folder\*.bat" is not expanded by every
@REM cmd (Wine's is not).
@if not exist "%CONDA_PREFIX%\etc\conda\deactivate.d\" @goto hooks_done
@pushd "%CONDA_PREFIX%\etc\conda\deactivate.d"
@for %%F in (*.bat) do @call "%%~fF"
@popd
:hooks_done

@REM Drop every occurrence of the environment's folders (see activate.bat) from PATH.
@REM With ; at both ends every entry is matched whole; the match ignores case.
@set "_CONDA_PACK_PATH=;%PATH%;"
@call :drop "%CONDA_PREFIX%"
@call :drop "%CONDA_PREFIX%\Library\mingw-w64\bin"
@call :drop "%CONDA_PREFIX%\Library\usr\bin"
@call :drop "%CONDA_PREFIX%\Library\bin"
@call :drop "%CONDA_PREFIX%\Scripts"
@call :drop "%CONDA_PREFIX%\bin"
@set "PATH=%_CONDA_PACK_PATH:~1,-1%"

@if defined _CONDA_PACK_OLD_PROMPT @set "PROMPT=%_CONDA_PACK_OLD_PROMPT%"
@set "_CONDA_PACK_OLD_PROMPT="
@set "_CONDA_PACK_PATH="
@set "_CONDA_PACK_DROP="
@set "_CONDA_PACK_NEW="
@set "CONDA_PREFIX="
@exit /b 0

:drop
@REM One pass turns ";A;A;" into ";A;": repeat until nothing changes. `call` expands the
@REM line twice, so the text to drop can come from a variable with no setlocal (Wine's
@REM endlocal would also return to a directory pushd left long ago).
@set "_CONDA_PACK_DROP=;%~1;"
:drop_again
@call set "_CONDA_PACK_NEW=%%_CONDA_PACK_PATH:%_CONDA_PACK_DROP%=;%%"
@if "%_CONDA_PACK_NEW%"=="%_CONDA_PACK_PATH%" @exit /b 0
@set "_CONDA_PACK_PATH=%_CONDA_PACK_NEW%"
@goto drop_again
