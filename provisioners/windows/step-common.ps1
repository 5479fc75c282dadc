# step-common.ps1: the start of every Windows Kubernetes step devcluster
# runs (prepare-windows-node, join-windows, network-windows). devcluster
# puts it in place of the `# @step-common` line of each script when it
# renders the step (src/provision/windows_node.rs), after the script has
# set $Step.

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

if ($env:DEVCLUSTER_TEST_FAIL_STEP -eq $Step) {
    [Console]::Error.WriteLine("${Step}: failing on purpose: DEVCLUSTER_TEST_FAIL_STEP=$Step (test hook)")
    exit 3
}

function Fail([string]$Message) {
    [Console]::Error.WriteLine("${Step}: $Message")
    exit 1
}

function Need([string]$Name) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ([string]::IsNullOrWhiteSpace($value)) { Fail "$Name must be set" }
    return $value
}
