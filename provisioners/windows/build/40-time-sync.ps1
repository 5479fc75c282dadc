# Time sync must be on: certificates and kubelet leases break on a clock
# that drifts. The Windows Time service runs at boot; a suspended VM's
# clock is set from the host after resume by devcluster itself.
param([string]$SeedDir)
$ErrorActionPreference = 'Stop'
Set-Service -Name W32Time -StartupType Automatic
Start-Service W32Time
& w32tm.exe /query /status | Out-Null
if ($LASTEXITCODE -ne 0) { throw "w32tm /query /status failed (exit $LASTEXITCODE): time sync is not running" }
