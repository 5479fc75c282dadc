# prepare-os for Windows nodes: the computer name, the cluster's nodes in
# the hosts file, time sync on. Needs no network. Safe to run again.
#
# Environment (from the host): NODE_NAME, CLUSTER_HOSTS ("name ip;...").
# Runs under run-step.ps1 ($ErrorActionPreference = 'Stop'); exits 3010
# to ask for a reboot after renaming the computer.
$ErrorActionPreference = 'Stop'

$name = $env:NODE_NAME
if (-not $name) { throw 'NODE_NAME is not set' }

# The specialize pass names the computer; a node whose name differs (an
# image made without devcluster's seed) is renamed, which takes a reboot.
if ($env:COMPUTERNAME -ne $name) {
    Write-Output "hostname: $env:COMPUTERNAME, renaming to $name (needs a reboot)"
    Rename-Computer -NewName $name -Force
    exit 3010
}
Write-Output "hostname: $name"

# The cluster's nodes, between our own markers; other lines stay.
$hostsFile = Join-Path $env:SystemRoot 'System32\drivers\etc\hosts'
$begin = '# devcluster begin'
$end = '# devcluster end'
$keep = @()
$inside = $false
foreach ($line in @(Get-Content -LiteralPath $hostsFile -ErrorAction SilentlyContinue)) {
    if ($line -eq $begin) { $inside = $true; continue }
    if ($line -eq $end) { $inside = $false; continue }
    if (-not $inside) { $keep += $line }
}
$entries = @($env:CLUSTER_HOSTS -split ';' | Where-Object { $_ } | ForEach-Object {
        $pair = $_ -split ' '
        "$($pair[1]) $($pair[0])"
    })
Set-Content -LiteralPath $hostsFile -Value ($keep + @($begin) + $entries + @($end)) -Encoding ascii
Write-Output "hosts: $($entries.Count) cluster nodes"

# Windows Time keeps the clock; devcluster sets it after a resume.
Set-Service -Name w32time -StartupType Automatic
if ((Get-Service -Name w32time).Status -ne 'Running') { Start-Service -Name w32time }
Write-Output "time sync: w32time $((Get-Service -Name w32time).Status)"
