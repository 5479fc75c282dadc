# devcluster op: ensure_network — the one internal switch devcluster owns,
# the cluster's gateway address on its vEthernet and the one NetNat whose
# prefix covers every devcluster cluster's /24. What exists is kept;
# creating anything needs an elevated session, reported as needsElevation
# (with what is missing) instead of failing half way. The cluster's
# gateway is remembered in a marker file for remove_network.
function Invoke-Op($P) {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $admin = (New-Object Security.Principal.WindowsPrincipal($identity)).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    $alias = "vEthernet ($($P.switch))"
    $missing = @()
    $created = @()

    $sw = Hyper-V\Get-VMSwitch -Name $P.switch -ErrorAction SilentlyContinue
    if ($sw -and "$($sw.SwitchType)" -ne 'Internal') {
        return @{ foreignSwitch = @{ name = $sw.Name; type = "$($sw.SwitchType)" } }
    }
    if (-not $sw) { $missing += 'switch' }

    $nats = @(Get-NetNat -ErrorAction SilentlyContinue)
    $ours = $nats | Where-Object { $_.Name -eq $P.nat }
    $others = @($nats | Where-Object { $_.Name -ne $P.nat })
    if ($ours -and "$($ours.InternalIPInterfaceAddressPrefix)" -ne $P.natPrefix) {
        return @{ foreignNat = @{ name = $ours.Name; prefix = "$($ours.InternalIPInterfaceAddressPrefix)" } }
    }
    if (-not $ours -and $others.Count -gt 0) {
        return @{ foreignNat = @{ name = $others[0].Name; prefix = "$($others[0].InternalIPInterfaceAddressPrefix)" } }
    }
    if (-not $ours) { $missing += 'nat' }

    $hasAddress = $false
    if ($sw) {
        $hasAddress = [bool](Get-NetIPAddress -InterfaceAlias $alias -AddressFamily IPv4 -ErrorAction SilentlyContinue |
            Where-Object { $_.IPAddress -eq $P.gateway })
    }
    if (-not $hasAddress) { $missing += 'address' }

    if ($missing.Count -eq 0) {
        Save-NetworkMarker $P
        return @{ created = @() }
    }
    if (-not $admin) { return @{ needsElevation = $missing } }

    if (-not $sw) {
        Hyper-V\New-VMSwitch -Name $P.switch -SwitchType Internal -Notes $P.notes | Out-Null
        $created += 'switch'
    }
    if (-not $hasAddress) {
        New-NetIPAddress -InterfaceAlias $alias -IPAddress $P.gateway -PrefixLength $P.prefixLength | Out-Null
        $created += 'address'
    }
    if (-not $ours) {
        New-NetNat -Name $P.nat -InternalIPInterfaceAddressPrefix $P.natPrefix | Out-Null
        $created += 'nat'
    }
    Save-NetworkMarker $P
    return @{ created = $created }
}

# Which address is the cluster's, for remove_network (destroy knows only
# the cluster's name).
function Save-NetworkMarker($P) {
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $P.marker) | Out-Null
    Set-Content -LiteralPath $P.marker -Value $P.gateway
}
