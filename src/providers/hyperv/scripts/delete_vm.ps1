# devcluster op: delete_vm — turns the VM off, drops saved memory, removes
# the VM and then its folder (differencing disk, seed ISO, configuration).
# Remove-VM leaves disks behind, hence the folder. Absent is fine; a
# folder left from a cut-short create goes too.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if ($vm -and -not (("$($vm.Notes)" -split "`n") -contains $P.tag)) {
        return @{ foreign = $true; notes = "$($vm.Notes)" }
    }
    $removedVm = $false
    if ($vm) {
        $state = "$($vm.State)"
        if ($state -eq 'Saved') {
            Hyper-V\Remove-VMSavedState -VM $vm
        } elseif ($state -ne 'Off') {
            Hyper-V\Stop-VM -VM $vm -TurnOff -Force
        }
        Hyper-V\Remove-VM -VM $vm -Force
        $removedVm = $true
    }
    $removedFiles = $false
    if (Test-Path -LiteralPath $P.nodeDir) {
        Remove-Item -LiteralPath $P.nodeDir -Recurse -Force
        $removedFiles = $true
    }
    return @{ removedVm = $removedVm; removedFiles = $removedFiles }
}
