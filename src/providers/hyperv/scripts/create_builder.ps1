# devcluster op: create_builder — the VM that builds a Windows base disk
# (devcluster images build): Generation 2 on a new blank dynamic VHDX of
# the planned size (not a differencing disk), the installation ISO on one
# SCSI DVD and the build seed CD (DCBUILD) on a second, Secure Boot with
# the MicrosoftWindows template, static memory, automatic checkpoints off,
# key-value pair exchange on (build.ps1's lines reach the host as KVP
# items: build_log), and the boot order hard disk first, then the
# installation DVD: the blank disk falls through to the DVD, and after
# Setup's first reboot the installed disk boots, so the ISO's "Press any
# key" prompt is never shown again. Its network adapter is on no switch:
# Setup and the build steps need no network. The ISO is attached where the
# host cache keeps it, never copied (the VM only reads it). A VM of that
# name is kept; one that is off is brought to these settings again, so a
# create cut short is completed.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if ($vm -and -not (("$($vm.Notes)" -split "`n") -contains $P.tag)) {
        return @{ foreign = $true; notes = "$($vm.Notes)" }
    }
    $created = $false
    if (-not $vm) {
        New-Item -ItemType Directory -Force -Path $P.nodeDir | Out-Null
        Set-Content -LiteralPath (Join-Path $P.nodeDir 'devcluster.txt') -Value $P.notes
        if (-not (Test-Path -LiteralPath $P.seedPath)) {
            Copy-Item -LiteralPath $P.seedSource -Destination $P.seedPath
        }
        if (-not (Test-Path -LiteralPath $P.vhdPath)) {
            Hyper-V\New-VHD -Path $P.vhdPath -SizeBytes $P.diskBytes -Dynamic | Out-Null
        }
        $vm = Hyper-V\New-VM -Name $P.name -Generation 2 -MemoryStartupBytes $P.memoryBytes -VHDPath $P.vhdPath -Path $P.nodeDir
        $created = $true
    }
    if ("$($vm.State)" -eq 'Off') {
        Hyper-V\Set-VM -VM $vm -ProcessorCount $P.cpus -StaticMemory -MemoryStartupBytes $P.memoryBytes -AutomaticCheckpointsEnabled $false -AutomaticStopAction Save -AutomaticStartAction Nothing -Notes $P.notes
        Hyper-V\Set-VMNetworkAdapter -VM $vm -StaticMacAddress $P.mac
        foreach ($iso in @($P.installIso, $P.seedPath)) {
            $dvd = Hyper-V\Get-VMDvdDrive -VM $vm | Where-Object { $_.Path -eq $iso }
            if (-not $dvd) {
                Hyper-V\Add-VMDvdDrive -VM $vm -ControllerNumber 0 -Path $iso
            }
        }
        $kvp = Hyper-V\Get-VMIntegrationService -VM $vm | Where-Object { $_.Id -like '*2A34B1C2-FD73-4043-8A5B-DD2159BC743F*' }
        if ($kvp) {
            Hyper-V\Enable-VMIntegrationService -VMIntegrationService $kvp
        }
        $secureBoot = if ($P.secureBoot) { 'On' } else { 'Off' }
        $disk = Hyper-V\Get-VMHardDiskDrive -VM $vm | Where-Object { $_.Path -eq $P.vhdPath }
        $install = Hyper-V\Get-VMDvdDrive -VM $vm | Where-Object { $_.Path -eq $P.installIso }
        Hyper-V\Set-VMFirmware -VM $vm -EnableSecureBoot $secureBoot -SecureBootTemplate $P.secureBootTemplate -BootOrder $disk, $install
    }
    return @{ created = $created; state = "$($vm.State)" }
}
