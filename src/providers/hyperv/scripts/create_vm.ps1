# devcluster op: create_vm — a Generation 2 VM on a differencing VHDX of the
# base (copied once to <root>\bases\<sha256>.vhdx) or golden disk, the node's seed ISO on a SCSI DVD, the planned
# static MAC with MAC address spoofing (pod networking), static memory,
# automatic checkpoints off, automatic stop action Save, time sync on, and
# devcluster's tag in Notes. A VM of that name is kept; one that is off is
# brought to these settings again, so a create cut short is completed.
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
        if ($P.parentSource -and -not (Test-Path -LiteralPath $P.parentPath)) {
            # The base disk is copied once into Hyper-V's own storage: a
            # parent must never move or change, and the cache may be pruned.
            New-Item -ItemType Directory -Force -Path (Split-Path -Parent $P.parentPath) | Out-Null
            $partial = "$($P.parentPath).$($P.name).partial"
            Copy-Item -LiteralPath $P.parentSource -Destination $partial -Force
            if (Test-Path -LiteralPath $P.parentPath) {
                Remove-Item -LiteralPath $partial -Force
            } else {
                Move-Item -LiteralPath $partial -Destination $P.parentPath
            }
        }
        if (-not (Test-Path -LiteralPath $P.vhdPath)) {
            Hyper-V\New-VHD -Path $P.vhdPath -ParentPath $P.parentPath -Differencing | Out-Null
        }
        $vm = Hyper-V\New-VM -Name $P.name -Generation 2 -MemoryStartupBytes $P.memoryBytes -VHDPath $P.vhdPath -SwitchName $P.switch -Path $P.nodeDir
        $created = $true
    }
    if ("$($vm.State)" -eq 'Off') {
        $vhd = Hyper-V\Get-VHD -Path $P.vhdPath
        if ($vhd.Size -lt $P.diskBytes) {
            Hyper-V\Resize-VHD -Path $P.vhdPath -SizeBytes $P.diskBytes
        }
        Hyper-V\Set-VM -VM $vm -ProcessorCount $P.cpus -StaticMemory -MemoryStartupBytes $P.memoryBytes -AutomaticCheckpointsEnabled $false -AutomaticStopAction Save -AutomaticStartAction Nothing -Notes $P.notes
        $secureBoot = if ($P.secureBoot) { 'On' } else { 'Off' }
        Hyper-V\Set-VMFirmware -VM $vm -EnableSecureBoot $secureBoot -SecureBootTemplate $P.secureBootTemplate
        Hyper-V\Set-VMNetworkAdapter -VM $vm -StaticMacAddress $P.mac -MacAddressSpoofing On
        $dvd = Hyper-V\Get-VMDvdDrive -VM $vm | Where-Object { $_.Path -eq $P.seedPath }
        if (-not $dvd) {
            Hyper-V\Add-VMDvdDrive -VM $vm -ControllerNumber 0 -Path $P.seedPath
        }
        $timeSync = Hyper-V\Get-VMIntegrationService -VM $vm | Where-Object { $_.Id -like '*2497F4DE-E9FA-4204-80E4-4B75C46419C0*' }
        if ($timeSync) {
            Hyper-V\Enable-VMIntegrationService -VMIntegrationService $timeSync
        }
        $disk = Hyper-V\Get-VMHardDiskDrive -VM $vm | Where-Object { $_.Path -eq $P.vhdPath }
        Hyper-V\Set-VMFirmware -VM $vm -FirstBootDevice $disk
    }
    return @{ created = $created; state = "$($vm.State)" }
}
