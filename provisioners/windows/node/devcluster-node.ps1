# First boot of a devcluster Windows node, run as SYSTEM in the specialize
# pass (RunSynchronous) from the node's seed CD: installs the node's pinned
# SSH host key and the cluster's client key where Windows OpenSSH reads
# them. Secrets stay in files: nothing here prints a key.
param([Parameter(Mandatory = $true)][string]$SeedDir)
$ErrorActionPreference = 'Stop'

$ssh = 'C:\ProgramData\ssh'
New-Item -ItemType Directory -Force -Path $ssh | Out-Null
Get-ChildItem (Join-Path $ssh 'ssh_host_*') -ErrorAction SilentlyContinue | Remove-Item -Force

function Install-Restricted([string]$Source, [string]$Target) {
    Copy-Item -Path $Source -Destination $Target -Force
    # Only Administrators and SYSTEM: sshd refuses a host key, and ignores
    # administrators_authorized_keys, that others can read.
    & icacls.exe $Target /inheritance:r /grant '*S-1-5-32-544:F' /grant '*S-1-5-18:F' | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls failed on $Target" }
}

Install-Restricted (Join-Path $SeedDir 'ssh_host_ed25519_key') (Join-Path $ssh 'ssh_host_ed25519_key')
Copy-Item -Path (Join-Path $SeedDir 'ssh_host_ed25519_key.pub') -Destination (Join-Path $ssh 'ssh_host_ed25519_key.pub') -Force
Install-Restricted (Join-Path $SeedDir 'authorized_keys') (Join-Path $ssh 'administrators_authorized_keys')
