# devcluster op: storage_root — where Hyper-V keeps VMs on this host
# (Get-VMHost's VirtualMachinePath); devcluster's VMs go under
# <that>\devcluster\<cluster>\<node>.
function Invoke-Op($P) {
    return @{ root = "$((Hyper-V\Get-VMHost).VirtualMachinePath)" }
}
