# devcluster op: remove_golden — deletes a Windows base disk kept under
# <root>\bases (keep_disk). Absent is fine. A base disk that a VM's disk
# has as parent (directly or through checkpoints) is not deleted: that VM
# would never start again. Those VMs are returned instead.
function Invoke-Op($P) {
    if (-not (Test-Path -LiteralPath $P.path)) { return @{ removed = $false; users = @() } }
    $users = @(Get-ChildVm $P.path)
    if ($users.Count -gt 0) { return @{ removed = $false; users = $users } }
    Remove-Item -LiteralPath $P.path -Force
    return @{ removed = $true; users = @() }
}

# The VMs one of whose disks has $Path somewhere in its parent chain.
function Get-ChildVm($Path) {
    $users = @()
    foreach ($vm in @(Hyper-V\Get-VM)) {
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
            $vhd = if ($drive.Path) { Hyper-V\Get-VHD -Path $drive.Path -ErrorAction SilentlyContinue }
            while ($vhd -and $vhd.ParentPath) {
                if ($vhd.ParentPath -eq $Path) { $users += $vm.Name; break }
                $vhd = Hyper-V\Get-VHD -Path $vhd.ParentPath -ErrorAction SilentlyContinue
            }
        }
    }
    return $users | Sort-Object -Unique
}
