# devcluster op: detect — the facts --provider auto and doctor decide on.
# Read only: nothing is created or changed.
function Invoke-Op($P) {
    $facts = @{}
    $facts.module = [bool](Get-Module -ListAvailable -Name Hyper-V)
    $cs = Get-CimInstance -ClassName Win32_ComputerSystem
    $facts.hypervisorPresent = [bool]$cs.HypervisorPresent
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    $facts.user = $identity.Name
    $facts.admin = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    $facts.hypervAdmin = $principal.IsInRole((New-Object Security.Principal.SecurityIdentifier('S-1-5-32-578')))
    $facts.vmms = "$((Get-Service -Name vmms -ErrorAction SilentlyContinue).Status)"
    $facts.switch = $null
    $facts.address = @()
    $facts.nats = @()
    $facts.virtualbox = [bool](Get-Service -Name VBoxSDS -ErrorAction SilentlyContinue)
    if ($facts.module -and $facts.vmms -eq 'Running') {
        $sw = Hyper-V\Get-VMSwitch -Name $P.switch -ErrorAction SilentlyContinue
        if ($sw) {
            $facts.switch = @{ name = $sw.Name; type = "$($sw.SwitchType)"; notes = "$($sw.Notes)" }
            $alias = "vEthernet ($($P.switch))"
            $facts.address = @(Get-NetIPAddress -InterfaceAlias $alias -AddressFamily IPv4 -ErrorAction SilentlyContinue |
                ForEach-Object { "$($_.IPAddress)/$($_.PrefixLength)" })
        }
        $facts.nats = @(Get-NetNat -ErrorAction SilentlyContinue |
            ForEach-Object { @{ name = $_.Name; prefix = $_.InternalIPInterfaceAddressPrefix } })
    }
    return $facts
}
