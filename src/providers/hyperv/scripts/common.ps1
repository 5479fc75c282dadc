# devcluster: the frame around every Hyper-V operation script.
#
# The operation's own script (before this one) defines Invoke-Op. Its
# parameters are JSON in the environment variable DEVCLUSTER_PARAMS, never
# spliced into this text. The result leaves as JSON between
# ===Begin-Output=== and ===End-Output===, a failure as JSON between
# ===Begin-Error=== and ===End-Error===. Only cmdlets and ConvertTo-Json
# are used here, so even a ConstrainedLanguage session gets to report why
# it cannot run.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

function Write-DevclusterError($Message, $Id, $Category, $Exception) {
    $record = @{ message = "$Message"; id = "$Id"; category = "$Category"; exception = "$Exception" }
    Write-Output '===Begin-Error==='
    Write-Output (ConvertTo-Json -InputObject $record -Compress)
    Write-Output '===End-Error==='
}

$mode = "$($ExecutionContext.SessionState.LanguageMode)"
if ($mode -ne 'FullLanguage') {
    Write-DevclusterError "PowerShell runs in $mode mode" 'devcluster.LanguageMode' 'PermissionDenied' ''
    exit 1
}

try {
    $P = ConvertFrom-Json -InputObject $env:DEVCLUSTER_PARAMS
    $result = Invoke-Op $P
    Write-Output '===Begin-Output==='
    Write-Output (ConvertTo-Json -InputObject $result -Depth 8 -Compress)
    Write-Output '===End-Output==='
    exit 0
} catch {
    $e = $_
    $type = $e.Exception.GetType().FullName
    Write-DevclusterError $e.Exception.Message $e.FullyQualifiedErrorId $e.CategoryInfo.Category $type
    exit 1
}
