# devcluster op: remove_network — the cluster's gateway address (read from
# the marker ensure_network wrote) leaves the devcluster switch once no VM
# of the cluster is left. The switch and the NetNat stay: other clusters
# share them, and making them again would ask for elevation again.
# Removing an address needs an elevated session; without one the address
# stays (harmless: the next cluster on that /24 reuses it) and is reported
# as kept.
function Invoke-Op($P) {
    if (-not (Test-Path -LiteralPath $P.marker)) { return @{ removed = $false; kept = $false } }
    $tag = "devcluster-cluster=$($P.cluster)"
    $left = @(Hyper-V\Get-VM | Where-Object { ("$($_.Notes)" -split "`n") -contains $tag })
    if ($left.Count -gt 0) { return @{ removed = $false; kept = $true; reason = 'vms' } }
    $gateway = "$(Get-Content -LiteralPath $P.marker -TotalCount 1)".Trim()
    $alias = "vEthernet ($($P.switch))"
    $address = Get-NetIPAddress -InterfaceAlias $alias -AddressFamily IPv4 -ErrorAction SilentlyContinue |
        Where-Object { $_.IPAddress -eq $gateway }
    if ($address) {
        $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
        $admin = (New-Object Security.Principal.WindowsPrincipal($identity)).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
        if (-not $admin) { return @{ removed = $false; kept = $true; reason = 'elevation' } }
        $address | Remove-NetIPAddress -Confirm:$false
    }
    Remove-Item -LiteralPath $P.marker -Force
    return @{ removed = [bool]$address; kept = $false }
}
