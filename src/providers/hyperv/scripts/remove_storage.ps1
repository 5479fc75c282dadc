# devcluster op: remove_storage — every node folder under devcluster's
# storage root whose devcluster.txt names the cluster, once no VM of the
# cluster is left (folders of creates cut short before their VM existed).
# Absent is fine.
function Invoke-Op($P) {
    $tag = "devcluster-cluster=$($P.cluster)"
    $left = @(Hyper-V\Get-VM | Where-Object { ("$($_.Notes)" -split "`n") -contains $tag })
    if ($left.Count -gt 0) { return @{ removed = @(); left = @($left | ForEach-Object { $_.Name }) } }
    $removed = @()
    if (Test-Path -LiteralPath $P.root) {
        foreach ($dir in @(Get-ChildItem -LiteralPath $P.root -Directory)) {
            $marker = Join-Path $dir.FullName 'devcluster.txt'
            if ((Test-Path -LiteralPath $marker) -and (@(Get-Content -LiteralPath $marker) -contains $tag)) {
                Remove-Item -LiteralPath $dir.FullName -Recurse -Force
                $removed += $dir.Name
            }
        }
    }
    return @{ removed = $removed; left = @() }
}
