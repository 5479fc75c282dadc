# network-windows.ps1: the Windows half of the pod network. flanneld.exe
# (VXLAN, VNI 4096, UDP 4789: the only VNI and port Windows' overlay
# networking accepts, the same as the Linux flannel DaemonSet) as a
# scheduled task, and kube-proxy.exe as a Windows service, each with its own
# least-privilege ServiceAccount token (never an admin credential).
#
# Why not pods: upstream stopped publishing the Windows flannel and
# flannel kube-proxy HostProcess images in 2025, and a node that pulls
# images cannot work offline; these binaries come from the host's cache.
#
# Environment (set by devcluster; none of it secret):
#   SOFTWARE_DIR    the uploaded node software (software.json)
#   NODE_NAME, NODE_IP
#   API_SERVER      https://IP:6443, the real endpoint: Windows pods and
#                   host processes cannot use the service VIP before
#                   kube-proxy programs it
#   POD_CIDR, SERVICE_CIDR
#   AGENT_DIR       where devcluster uploaded each agent's kubeconfig and
#                   token (flannel.kubeconfig, flannel.token,
#                   kube-proxy.kubeconfig, kube-proxy.token)
#   READY_TIMEOUT   seconds to wait for flanneld's lease and kube-proxy
#   KUBERNETES_VIP  the `kubernetes` Service's address (first of SERVICE_CIDR)

$Step = 'network-windows'
# @step-common

$SoftwareDir = Need 'SOFTWARE_DIR'
$NodeName = Need 'NODE_NAME'
$NodeIp = Need 'NODE_IP'
$ApiServer = Need 'API_SERVER'
$PodCidr = Need 'POD_CIDR'
$ServiceCidr = Need 'SERVICE_CIDR'
$AgentDir = Need 'AGENT_DIR'
$ReadyTimeout = [int](Need 'READY_TIMEOUT')
$KubernetesVip = Need 'KUBERNETES_VIP'

$KDir = 'C:\k'
$CniBin = 'C:\opt\cni\bin'
$CniConf = 'C:\etc\cni\net.d'
$FlannelDir = 'C:\etc\kube-flannel'
$SubnetEnv = 'C:\run\flannel\subnet.env'
$NetworkName = 'vxlan0'
$LogDir = 'C:\var\log\devcluster'

foreach ($dir in $CniBin, $CniConf, $FlannelDir, 'C:\run\flannel', $LogDir) {
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
}

# The agents' tokens: SYSTEM and Administrators only.
foreach ($name in 'flannel', 'kube-proxy') {
    foreach ($file in "$name.kubeconfig", "$name.token") {
        $path = Join-Path $AgentDir $file
        if (-not (Test-Path $path)) { Fail "missing $path (devcluster uploads it before this step)" }
        & icacls.exe $path /inheritance:r /grant:r '*S-1-5-18:F' '*S-1-5-32-544:F' | Out-Null
        if ($LASTEXITCODE -ne 0) { Fail "icacls could not restrict $path" }
    }
}

$software = @{}
foreach ($item in (Get-Content -Raw (Join-Path $SoftwareDir 'software.json') | ConvertFrom-Json)) {
    $software[$item.name] = Join-Path $SoftwareDir $item.file
}
foreach ($name in 'cni-plugins', 'flannel-cni', 'flanneld', 'kube-proxy') {
    if (-not $software.ContainsKey($name)) { Fail "software.json lists no $name" }
}

# --- CNI: flannel delegating to win-overlay ------------------------------------
if (-not (Test-Path (Join-Path $CniBin 'win-overlay.exe'))) {
    & tar.exe -xzf $software['cni-plugins'] -C $CniBin ./win-overlay.exe ./host-local.exe
    if ($LASTEXITCODE -ne 0) { Fail "tar.exe could not unpack $($software['cni-plugins'])" }
}
if (-not (Test-Path (Join-Path $CniBin 'flannel.exe'))) {
    & tar.exe -xzf $software['flannel-cni'] -C $CniBin
    if ($LASTEXITCODE -ne 0) { Fail "tar.exe could not unpack $($software['flannel-cni'])" }
    $unpacked = Get-ChildItem $CniBin -Filter 'flannel*.exe' | Where-Object { $_.Name -ne 'flannel.exe' } | Select-Object -First 1
    if (-not $unpacked) { Fail "$($software['flannel-cni']) holds no flannel*.exe" }
    Move-Item -Force $unpacked.FullName (Join-Path $CniBin 'flannel.exe')
}
foreach ($name in 'flanneld', 'kube-proxy') {
    $target = Join-Path $KDir "$name.exe"
    if (-not (Test-Path $target) -or (Get-FileHash $target).Hash -ne (Get-FileHash $software[$name]).Hash) {
        Copy-Item -Force $software[$name] $target
    }
}

# A stale config in net.d wins over ours (sig-windows-tools #181): ours only.
Get-ChildItem $CniConf -File | Where-Object { $_.Name -ne '10-flannel.conf' } | Remove-Item -Force
$cni = [ordered]@{
    name         = 'flannel.4096'
    cniVersion   = '0.3.0'
    type         = 'flannel'
    capabilities = [ordered]@{ portMappings = $true; dns = $true }
    delegate     = [ordered]@{
        type     = 'win-overlay'
        policies = @(
            [ordered]@{ Name = 'EndpointPolicy'; Value = [ordered]@{ Type = 'OutBoundNAT'; ExceptionList = @($PodCidr, $ServiceCidr) } },
            [ordered]@{ Name = 'EndpointPolicy'; Value = [ordered]@{ Type = 'ROUTE'; DestinationPrefix = $ServiceCidr; NeedEncap = $true } }
        )
    }
}
Set-Content -Path (Join-Path $CniConf '10-flannel.conf') -Encoding ascii -Value ($cni | ConvertTo-Json -Depth 10)
$netConf = [ordered]@{ Network = $PodCidr; Backend = [ordered]@{ Type = 'vxlan'; VNI = 4096; Port = 4789 } }
Set-Content -Path (Join-Path $FlannelDir 'net-conf.json') -Encoding ascii -Value ($netConf | ConvertTo-Json -Depth 5)

# --- flanneld: a scheduled task running as SYSTEM at boot ------------------------
# flanneld.exe cannot run as a Windows service itself; Task Scheduler is
# part of Windows (no third-party service wrapper), restarts it on failure
# and starts it at boot.
[Environment]::SetEnvironmentVariable('NODE_NAME', $NodeName, 'Machine')
$flannelArgs = @(
    '--kube-subnet-mgr',
    "--kubeconfig-file=$(Join-Path $AgentDir 'flannel.kubeconfig')",
    "--iface=$NodeIp",
    "--net-config-path=$(Join-Path $FlannelDir 'net-conf.json')",
    "--subnet-file=$SubnetEnv",
    '--ip-masq=false'
) -join ' '
$action = New-ScheduledTaskAction -Execute (Join-Path $KDir 'flanneld.exe') -Argument $flannelArgs
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) -ExecutionTimeLimit ([TimeSpan]::Zero) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
$principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
$existing = Get-ScheduledTask -TaskName 'flanneld' -ErrorAction SilentlyContinue
if (-not $existing -or $existing.Actions[0].Arguments -ne $flannelArgs) {
    if ($existing) { Stop-ScheduledTask -TaskName 'flanneld'; Unregister-ScheduledTask -TaskName 'flanneld' -Confirm:$false }
    Register-ScheduledTask -TaskName 'flanneld' -Action $action -Trigger $trigger -Settings $settings -Principal $principal | Out-Null
    Write-Output 'registered the flanneld task'
}
if ((Get-ScheduledTask -TaskName 'flanneld').State -ne 'Running') { Start-ScheduledTask -TaskName 'flanneld' }

$deadline = (Get-Date).AddSeconds($ReadyTimeout)
while (-not ((Test-Path $SubnetEnv) -and (Get-HnsNetwork | Where-Object { $_.Name -eq $NetworkName }))) {
    if ((Get-Date) -gt $deadline) {
        Fail "${NodeName}: flanneld has no subnet lease or HNS network $NetworkName after ${ReadyTimeout}s (is the node's podCIDR set? see Get-ScheduledTask flanneld and the flannel DaemonSet on the control plane)"
    }
    Start-Sleep -Seconds 3
}
$subnet = (Get-Content $SubnetEnv | Where-Object { $_ -match '^FLANNEL_SUBNET=' }) -replace '^FLANNEL_SUBNET=', ''
Write-Output "flanneld holds $subnet; HNS network $NetworkName is up"

# --- kube-proxy: its source VIP from host-local, then the service ---------------
$vipFile = Join-Path $FlannelDir 'source-vip.txt'
if (Test-Path $vipFile) {
    $sourceVip = (Get-Content $vipFile).Trim()
} else {
    $ipam = [ordered]@{
        cniVersion = '0.3.0'
        name       = $NetworkName
        ipam       = [ordered]@{ type = 'host-local'; ranges = @(, @([ordered]@{ subnet = $subnet })); dataDir = 'C:\var\lib\cni\networks' }
    } | ConvertTo-Json -Depth 10
    $env:CNI_COMMAND = 'ADD'
    $env:CNI_CONTAINERID = 'devcluster-kube-proxy'
    $env:CNI_NETNS = 'none'
    $env:CNI_IFNAME = 'none'
    $env:CNI_PATH = $CniBin
    $answer = $ipam | & (Join-Path $CniBin 'host-local.exe') | ConvertFrom-Json
    if ($LASTEXITCODE -ne 0 -or -not $answer.ips) { Fail "host-local could not give kube-proxy a source VIP in $subnet" }
    $sourceVip = ($answer.ips[0].address -split '/')[0]
    Set-Content -Path $vipFile -Value $sourceVip -Encoding ascii
}
$proxyArgs = @(
    "`"$KDir\kube-proxy.exe`"",
    '--windows-service',
    "--kubeconfig=$(Join-Path $AgentDir 'kube-proxy.kubeconfig')",
    "--hostname-override=$NodeName",
    '--proxy-mode=kernelspace',
    "--network-name=$NetworkName",
    "--source-vip=$sourceVip",
    "--cluster-cidr=$PodCidr",
    "--log-file=$LogDir\kube-proxy.log",
    '--logtostderr=false'
) -join ' '
$service = Get-CimInstance Win32_Service -Filter "Name='kube-proxy'"
if (-not $service) {
    & sc.exe create kube-proxy binPath= $proxyArgs start= auto DisplayName= 'Kubernetes kube-proxy' | Out-Null
    if ($LASTEXITCODE -ne 0) { Fail 'sc.exe create kube-proxy failed' }
    & sc.exe failure kube-proxy reset= 0 actions= restart/10000 | Out-Null
    Write-Output 'registered the kube-proxy service'
} elseif ($service.PathName -ne $proxyArgs) {
    & sc.exe config kube-proxy binPath= $proxyArgs | Out-Null
    Restart-Service kube-proxy
}
if ((Get-Service kube-proxy).Status -ne 'Running') { Start-Service kube-proxy }

# kube-proxy is working once it has programmed the `kubernetes` Service's
# VIP (the first address of the service network) as an HNS load balancer.
while (-not (Get-HnsPolicyList | Where-Object { $_.Policies.VIPs -contains $KubernetesVip })) {
    if ((Get-Date) -gt $deadline) {
        Fail "${NodeName}: kube-proxy has programmed no load balancer for $KubernetesVip after ${ReadyTimeout}s (see $LogDir\kube-proxy.log)"
    }
    Start-Sleep -Seconds 3
}
Write-Output "kube-proxy serves $KubernetesVip"
Write-Output 'done'
