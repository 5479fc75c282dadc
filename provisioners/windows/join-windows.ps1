# join-windows.ps1: `kubeadm join` of a Windows worker, with the rules of
# the Linux workers' join.sh: wait for the API server up to JOIN_TIMEOUT
# seconds in all, retry a failed join (after `kubeadm reset`) until then,
# and skip when the node has joined already.
#
# Environment (set by devcluster; none of it secret):
#   KUBEADM_CONFIG  the JoinConfiguration devcluster uploaded (it holds the
#                   bootstrap token: readable by SYSTEM and Administrators only)
#   API_ENDPOINT    IP:6443 of the control plane
#   JOIN_TIMEOUT    seconds in all
#   NODE_NAME, NODE_IP  for kubelet-service.ps1

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$Step = 'join-windows'

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

$Config = Need 'KUBEADM_CONFIG'
$Endpoint = Need 'API_ENDPOINT'
$NodeName = Need 'NODE_NAME'
$NodeIp = Need 'NODE_IP'
$Timeout = 0
if (-not [int]::TryParse((Need 'JOIN_TIMEOUT'), [ref]$Timeout) -or $Timeout -le 0) {
    Fail "JOIN_TIMEOUT is '$env:JOIN_TIMEOUT', not a positive number of seconds"
}
$KubeletConf = 'C:\etc\kubernetes\kubelet.conf'
$Kubeadm = 'C:\k\kubeadm.exe'
$RetryPause = 10

if (Test-Path $KubeletConf) {
    Write-Output "kubeadm join: already joined ($KubeletConf exists)"
    Write-Output 'done'
    exit 0
}
if (-not (Test-Path $Kubeadm)) { Fail "$Kubeadm is missing (the prepare-windows-node step installs it)" }
if (-not (Test-Path $Config)) { Fail "missing $Config (devcluster uploads it before this step)" }

# The config holds the bootstrap token: SYSTEM and Administrators only.
& icacls.exe $Config /inheritance:r /grant:r '*S-1-5-18:F' '*S-1-5-32-544:F' | Out-Null
if ($LASTEXITCODE -ne 0) { Fail "icacls could not restrict $Config" }

$deadline = (Get-Date).AddSeconds($Timeout)
function TimedOut([string]$What) {
    Fail "timed out after ${Timeout}s: $What (API server https://$Endpoint; see 'devcluster logs' of the control plane)"
}

$hostPart, $portPart = $Endpoint -split ':'
Write-Output "waiting up to ${Timeout}s for the API server at https://$Endpoint"
$nextNote = (Get-Date).AddSeconds(60)
while (-not (Test-NetConnection -ComputerName $hostPart -Port ([int]$portPart) -InformationLevel Quiet -WarningAction SilentlyContinue)) {
    if ((Get-Date) -gt $deadline) { TimedOut 'the API server never answered' }
    if ((Get-Date) -gt $nextNote) {
        Write-Output "still waiting for https://$Endpoint"
        $nextNote = (Get-Date).AddSeconds(60)
    }
    Start-Sleep -Seconds 5
}
Write-Output "the API server at https://$Endpoint answers"

$attempt = 0
while ($true) {
    $attempt++
    Write-Output "kubeadm join, attempt $attempt"
    & $Kubeadm join --config $Config --v=1
    if ($LASTEXITCODE -eq 0) { break }
    if ((Get-Date).AddSeconds($RetryPause) -gt $deadline) {
        TimedOut "kubeadm join failed $attempt time(s), last with exit code $LASTEXITCODE"
    }
    Write-Output "kubeadm join failed (exit $LASTEXITCODE); resetting and retrying in ${RetryPause}s"
    & $Kubeadm reset --force --cri-socket npipe:////./pipe/containerd-containerd | Out-Null
    Start-Sleep -Seconds $RetryPause
}

# kubeadm has written kubeadm-flags.env: the service starts from it now.
$changed = & C:\k\kubelet-service.ps1 -NodeName $NodeName -NodeIp $NodeIp
if ($changed -contains 'changed') {
    Restart-Service kubelet
    Write-Output 'restarted the kubelet with kubeadm-flags.env'
}
Write-Output 'done'
