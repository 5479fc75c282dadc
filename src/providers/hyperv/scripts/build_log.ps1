# devcluster op: build_log — what a builder VM's build.ps1 has written so
# far. Hyper-V keeps no serial log, so build.ps1 also writes each line as
# its own guest key-value pair (HKLM\SOFTWARE\Microsoft\Virtual Machine\Guest,
# named <prefix>NNN in order); the host sees those in
# Msvm_KvpExchangeComponent.GuestExchangeItems, each an XML
# Msvm_KvpExchangeDataItem instance with Name and Data properties. The
# items whose Name starts with the prefix are returned as they are; the
# caller orders them. No data yet (Setup still running, the data exchange
# service not started) is an empty list; an absent VM is state Absent.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent'; items = @() } }
    $items = @()
    $systems = @(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName Msvm_ComputerSystem |
        Where-Object { $_.ElementName -eq $P.name })
    foreach ($system in $systems) {
        $kvp = Get-CimAssociatedInstance -InputObject $system -ResultClassName Msvm_KvpExchangeComponent
        if (-not $kvp) { continue }
        foreach ($text in @($kvp.GuestExchangeItems)) {
            if (-not $text) { continue }
            $doc = [xml]$text
            $name = $doc.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Name']/VALUE")
            if (-not $name -or -not $name.InnerText.StartsWith($P.prefix)) { continue }
            $data = $doc.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Data']/VALUE")
            $items += @{ name = $name.InnerText; data = $(if ($data) { $data.InnerText } else { '' }) }
        }
    }
    return @{ state = "$($vm.State)"; items = $items }
}
