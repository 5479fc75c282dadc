# devcluster op: start_vm — boots the VM, or restores it from a save
# (Start-VM does both); one already running is left alone.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent'; changed = $false } }
    if ("$($vm.State)" -eq 'Running') { return @{ state = 'Running'; changed = $false } }
    Hyper-V\Start-VM -VM $vm
    return @{ state = "$((Hyper-V\Get-VM -Name $P.name).State)"; changed = $true }
}
