# devcluster's step runner on Windows nodes: runs one step script under
# $ErrorActionPreference = 'Stop', with the environment the host set.
#
#   powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass
#     -File C:\ProgramData\devcluster\steps\run-step.ps1 C:\...\STEP.ps1
#
# Exit code: the script's `exit N`, else the last native command's
# $LASTEXITCODE (0 when none ran); 1 for a terminating error (written to
# stderr with its position). 3010 (ERROR_SUCCESS_REBOOT_REQUIRED) asks the
# host to reboot the node and run the step again.
param([Parameter(Mandatory = $true)][string]$Script)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# TEST ONLY (DEVCLUSTER_TEST_FAIL_STEP, passed through from the host):
# the named step fails before changing anything.
$name = [System.IO.Path]::GetFileNameWithoutExtension($Script)
if ($env:DEVCLUSTER_TEST_FAIL_STEP -and $env:DEVCLUSTER_TEST_FAIL_STEP -eq $name) {
    [Console]::Error.WriteLine("DEVCLUSTER_TEST_FAIL_STEP=${name}: failing on purpose")
    exit 3
}

$global:LASTEXITCODE = 0
try {
    & $Script
} catch {
    [Console]::Error.WriteLine(($_ | Out-String).TrimEnd())
    exit 1
}
exit $LASTEXITCODE
