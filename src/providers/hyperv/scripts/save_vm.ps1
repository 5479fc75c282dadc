# devcluster op: save_vm — Save-VM writes memory to disk and frees it
# (Suspend-VM would only pause). Saved or off is left alone.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent'; changed = $false } }
    $state = "$($vm.State)"
    if ($state -eq 'Saved' -or $state -eq 'Off') { return @{ state = $state; changed = $false } }
    Hyper-V\Save-VM -VM $vm
    return @{ state = "$((Hyper-V\Get-VM -Name $P.name).State)"; changed = $true }
}
