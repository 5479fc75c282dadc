# OpenSSH server for devcluster: sshd running at boot, devcluster's client
# key for Administrator, PowerShell as the default shell, port 22 open.
#
# Windows Server 2025 ships OpenSSH (enable it); on 2022 it is a Feature on
# Demand that downloads from Windows Update, so the build seed carries the
# pinned Win32-OpenSSH release zip (openssh-win64.zip, the release's OpenSSH-Win64.zip) instead.
param([Parameter(Mandatory = $true)][string]$SeedDir)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$zip = Join-Path $SeedDir 'openssh-win64.zip'
if (Test-Path $zip) {
    $target = Join-Path $env:ProgramFiles 'OpenSSH'
    Expand-Archive -Path $zip -DestinationPath $env:TEMP -Force
    New-Item -ItemType Directory -Force -Path $target | Out-Null
    Copy-Item -Path (Join-Path $env:TEMP 'OpenSSH-Win64\*') -Destination $target -Recurse -Force
    & (Join-Path $target 'install-sshd.ps1')
    $machinePath = [Environment]::GetEnvironmentVariable('Path', 'Machine')
    if ($machinePath -notlike "*$target*") {
        [Environment]::SetEnvironmentVariable('Path', "$machinePath;$target", 'Machine')
    }
} elseif (-not (Get-Service -Name sshd -ErrorAction SilentlyContinue)) {
    throw 'no sshd service: this image has no built-in OpenSSH and the seed has no openssh-win64.zip'
}

# Starting sshd once writes the default sshd_config and host keys.
Start-Service sshd
Stop-Service sshd

# Only the ed25519 host key: each node gets its own, pinned by devcluster,
# at first boot; the keys generated here are removed before sysprep.
$config = 'C:\ProgramData\ssh\sshd_config'
$lines = Get-Content $config | Where-Object { $_ -notmatch '^\s*HostKey\s' }
Set-Content -Path $config -Value (@('HostKey __PROGRAMDATA__/ssh/ssh_host_ed25519_key', 'PasswordAuthentication no') + $lines) -Encoding ascii

# sshd ignores administrators_authorized_keys unless only Administrators
# and SYSTEM can read it.
$keys = 'C:\ProgramData\ssh\administrators_authorized_keys'
Copy-Item -Path (Join-Path $SeedDir 'authorized_keys') -Destination $keys -Force
& icacls.exe $keys /inheritance:r /grant '*S-1-5-32-544:F' /grant '*S-1-5-18:F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls failed on $keys" }

New-Item -Path 'HKLM:\SOFTWARE\OpenSSH' -Force | Out-Null
$shell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
New-ItemProperty -Path 'HKLM:\SOFTWARE\OpenSSH' -Name DefaultShell -Value $shell -PropertyType String -Force | Out-Null

# "auto" proved unreliable right after boot (rgl/windows-vagrant).
& sc.exe config sshd start= delayed-auto | Out-Null
if ($LASTEXITCODE -ne 0) { throw 'sc.exe config sshd failed' }

if (-not (Get-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name 'OpenSSH-Server-In-TCP' -DisplayName 'OpenSSH Server (sshd)' -Enabled True -Direction Inbound -Protocol TCP -Action Allow -LocalPort 22 | Out-Null
} else {
    Enable-NetFirewallRule -Name 'OpenSSH-Server-In-TCP'
}
