# devcluster op: press_key — one key press on the VM's keyboard (the
# Windows ISO's "Press any key to boot from CD or DVD" prompt). Hyper-V's
# cmdlets type no keys; WMI does: Msvm_Keyboard.TypeKey(keyCode), a
# press-release of a Windows virtual-key code, on the Msvm_Keyboard
# associated with the Msvm_ComputerSystem whose ElementName is the VM
# (namespace root\virtualization\v2). Returns the VM's state and TypeKey's
# return value (0: done); an absent VM is state Absent.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent' } }
    $system = @(Get-CimInstance -Namespace 'root\virtualization\v2' -ClassName Msvm_ComputerSystem |
        Where-Object { $_.ElementName -eq $P.name })
    if ($system.Count -ne 1) { return @{ state = "$($vm.State)"; systems = $system.Count } }
    $keyboard = Get-CimAssociatedInstance -InputObject $system[0] -ResultClassName Msvm_Keyboard
    if (-not $keyboard) { return @{ state = "$($vm.State)"; keyboard = $false } }
    $typed = Invoke-CimMethod -InputObject $keyboard -MethodName TypeKey -Arguments @{ keyCode = [uint32]$P.keyCode }
    return @{ state = "$($vm.State)"; returnValue = [int64]$typed.ReturnValue }
}
