# join-windows.ps1: `kubeadm join` of a Windows worker, with the rules of
# the Linux workers' join.sh (src/provision/deadlines.rs): wait up to
# API_WAIT_TIMEOUT seconds for the API server to answer at all, then have
# JOIN_TIMEOUT seconds from that moment to join, retrying a failed join
# (after `kubeadm reset`) until then; skip when the node has joined already.
#
# Environment (set by devcluster; none of it secret):
#   KUBEADM_CONFIG  the JoinConfiguration devcluster uploaded (it holds the
#                   bootstrap token: readable by SYSTEM and Administrators only)
#   API_ENDPOINT    IP:6443 of the control plane
#   API_WAIT_TIMEOUT  seconds for the API server to answer at all
#   JOIN_TIMEOUT    seconds to join, from the API server's first answer
#   NODE_NAME, NODE_IP  for kubelet-service.ps1

$Step = 'join-windows'
# @step-common

$Config = Need 'KUBEADM_CONFIG'
$Endpoint = Need 'API_ENDPOINT'
$NodeName = Need 'NODE_NAME'
$NodeIp = Need 'NODE_IP'
function Seconds([string]$Name) {
    $value = 0
    if (-not [int]::TryParse((Need $Name), [ref]$value) -or $value -le 0) {
        Fail "$Name is '$([Environment]::GetEnvironmentVariable($Name))', not a positive number of seconds"
    }
    return $value
}
$ApiWait = Seconds 'API_WAIT_TIMEOUT'
$Timeout = Seconds 'JOIN_TIMEOUT'
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

function TimedOut([string]$What) {
    Fail "${NodeName}: timed out after ${Timeout}s: $What (API server https://$Endpoint; see 'devcluster logs' of this node and of the control plane)"
}

$hostPart, $portPart = $Endpoint -split ':'
Write-Output "waiting up to ${ApiWait}s for the API server at https://$Endpoint"
$apiDeadline = (Get-Date).AddSeconds($ApiWait)
$nextNote = (Get-Date).AddSeconds(60)
while (-not (Test-NetConnection -ComputerName $hostPart -Port ([int]$portPart) -InformationLevel Quiet -WarningAction SilentlyContinue)) {
    if ((Get-Date) -gt $apiDeadline) {
        Fail "${NodeName}: the API server at https://$Endpoint did not answer in ${ApiWait}s (see 'devcluster logs' of the control plane)"
    }
    if ((Get-Date) -gt $nextNote) {
        Write-Output "still waiting for https://$Endpoint"
        $nextNote = (Get-Date).AddSeconds(60)
    }
    Start-Sleep -Seconds 5
}
Write-Output "the API server at https://$Endpoint answers; ${Timeout}s to join from now"
$deadline = (Get-Date).AddSeconds($Timeout)

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
