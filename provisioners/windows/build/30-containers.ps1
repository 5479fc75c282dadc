# The Containers feature (process isolation; no Hyper-V: it cannot be
# installed without nested virtualisation). Exit 3010 asks build.ps1 to
# reboot and run this step again, which then finds it installed.
param([string]$SeedDir)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$feature = Get-WindowsFeature -Name Containers
if ($feature.InstallState -eq 'Installed') { exit 0 }
$result = Install-WindowsFeature -Name Containers
if (-not $result.Success) { throw 'Install-WindowsFeature Containers failed' }
if ($result.RestartNeeded -ne 'No') { exit 3010 }
