# Generalize and shut down: the next boot (a node's) runs specialize and
# oobeSystem from the node's seed CD.
param([string]$SeedDir)
$ErrorActionPreference = 'Stop'

# Host keys generated during the build would be shared by every clone.
Get-ChildItem 'C:\ProgramData\ssh\ssh_host_*' -ErrorAction SilentlyContinue | Remove-Item -Force
# No more autologon, and no cached answer file: Windows looks in Panther
# before removable media, and would re-apply the build's answers instead
# of the node's.
Remove-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon' -Name AutoAdminLogon, DefaultPassword -ErrorAction SilentlyContinue
Remove-Item -Force -ErrorAction SilentlyContinue 'C:\Windows\Panther\unattend.xml', 'C:\Windows\Panther\Unattend\unattend.xml'
# Per-user appx packages make sysprep fail (rgl windows-sysprep-prepare.ps1).
Get-AppxPackage -AllUsers | Where-Object { $_.NonRemovable -eq $false } | Remove-AppxPackage -AllUsers -ErrorAction SilentlyContinue

& (Join-Path $env:SystemRoot 'System32\Sysprep\sysprep.exe') /generalize /oobe /shutdown /quiet
if ($LASTEXITCODE -ne 0) { throw "sysprep failed (exit $LASTEXITCODE)" }
