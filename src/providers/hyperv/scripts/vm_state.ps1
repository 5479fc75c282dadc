# devcluster op: vm_state — the VM's state, or absent.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent' } }
    return @{ state = "$($vm.State)" }
}
