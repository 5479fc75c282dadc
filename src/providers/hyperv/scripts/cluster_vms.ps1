# devcluster op: cluster_vms — the VMs whose Notes carry the cluster's tag,
# so destroy finds them without a state file.
function Invoke-Op($P) {
    $tag = "devcluster-cluster=$($P.cluster)"
    $names = @(Hyper-V\Get-VM | Where-Object { ("$($_.Notes)" -split "`n") -contains $tag } |
        ForEach-Object { $_.Name } | Sort-Object)
    return @{ names = $names }
}
