# kubelet-service.ps1: registers (or updates) the kubelet Windows service.
# Called by prepare-windows-node.ps1 before the join and by
# join-windows.ps1 after it.
#
# The service runs kubelet.exe itself (`--windows-service`: no wrapper
# process). Its arguments are kubeadm's KUBELET_KUBEADM_ARGS from
# C:\var\lib\kubelet\kubeadm-flags.env when kubeadm has written it, else the
# same flags devcluster's JoinConfiguration makes kubeadm write (the node IP
# and the containerd pipe), so that the kubelet `kubeadm join` starts is
# already the right one; plus the Windows flags. Never
# --pod-infra-container-image (kubelet 1.34+ refuses to start with it) and
# never the WinOverlay/WinDSR feature gates (GA and locked since 1.34): they
# are dropped even if some kubeadm writes them.
#
# Exit 0 and prints `changed` when the service's command line changed.

param(
    [Parameter(Mandatory = $true)][string]$NodeName,
    [Parameter(Mandatory = $true)][string]$NodeIp
)

$ErrorActionPreference = 'Stop'
$KDir = 'C:\k'
$FlagsFile = 'C:\var\lib\kubelet\kubeadm-flags.env'
$Pipe = 'npipe:////./pipe/containerd-containerd'

function Get-KubeadmFlags {
    if (-not (Test-Path $FlagsFile)) {
        return @("--container-runtime-endpoint=$Pipe", "--node-ip=$NodeIp")
    }
    $line = Get-Content $FlagsFile | Where-Object { $_ -match '^KUBELET_KUBEADM_ARGS=' } | Select-Object -First 1
    if (-not $line) { return @() }
    $value = ($line -replace '^KUBELET_KUBEADM_ARGS=', '').Trim('"')
    $flags = @()
    foreach ($flag in ($value -split '\s+')) {
        if ($flag -eq '') { continue }
        if ($flag -like '--pod-infra-container-image*') { continue }
        if ($flag -like '--feature-gates=*') {
            $gates = ($flag -replace '^--feature-gates=', '') -split ',' | Where-Object { $_ -notmatch '^(WinOverlay|WinDSR)=' }
            if ($gates) { $flags += "--feature-gates=$($gates -join ',')" }
            continue
        }
        $flags += $flag
    }
    return $flags
}

$windowsFlags = @(
    '--windows-service',
    '--cert-dir=C:\var\lib\kubelet\pki',
    '--config=C:\var\lib\kubelet\config.yaml',
    '--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf',
    '--kubeconfig=C:\etc\kubernetes\kubelet.conf',
    "--hostname-override=$NodeName",
    '--cgroups-per-qos=false',
    '--enforce-node-allocatable=""',
    '--resolv-conf=""',
    '--log-file=C:\var\log\kubelet\kubelet.log',
    '--logtostderr=false'
)
$kubeadmFlags = @(Get-KubeadmFlags)
$binPath = (@("`"$KDir\kubelet.exe`"") + $windowsFlags + $kubeadmFlags) -join ' '

$service = Get-CimInstance Win32_Service -Filter "Name='kubelet'"
if (-not $service) {
    & sc.exe create kubelet binPath= $binPath start= auto depend= containerd DisplayName= 'Kubernetes kubelet' | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'sc.exe create kubelet failed' }
    & sc.exe failure kubelet reset= 0 actions= restart/10000 | Out-Null
    Write-Output 'registered the kubelet service'
    Write-Output 'changed'
} elseif ($service.PathName -ne $binPath) {
    & sc.exe config kubelet binPath= $binPath start= auto depend= containerd | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'sc.exe config kubelet failed' }
    Write-Output 'updated the kubelet service'
    Write-Output 'changed'
}
exit 0
