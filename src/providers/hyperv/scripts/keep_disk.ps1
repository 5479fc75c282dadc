# devcluster op: keep_disk — the disk of a builder VM that is off (sysprep
# shut it down), kept as a Windows base disk at <root>\bases\<id>.vhdx,
# beside the Linux base disks: where differencing disks find their parent,
# which never moves. Copy-Item, not Convert-VHD: the builder is off, so its
# dynamic VHDX is closed and consistent and a byte copy is that disk
# (Convert-VHD would write the same dynamic VHDX again, and requires the
# source not be attached, which a disk still configured on the builder
# is). The copy goes to a .partial file renamed at the end, so no VM ever
# sees half a parent. A base already there that a VM's disk has as parent
# is never replaced (inUse). Returns the copy's path, file size and
# virtual size.
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ state = 'Absent' } }
    if (-not (("$($vm.Notes)" -split "`n") -contains $P.tag)) {
        return @{ foreign = $true; notes = "$($vm.Notes)" }
    }
    if ("$($vm.State)" -ne 'Off') { return @{ state = "$($vm.State)" } }
    if (-not (Test-Path -LiteralPath $P.vhdPath)) { return @{ state = 'Off'; noDisk = $true } }
    if (Test-Path -LiteralPath $P.target) {
        $users = @(Get-ChildVm $P.target)
        if ($users.Count -gt 0) { return @{ state = 'Off'; inUse = $users } }
    }
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $P.target) | Out-Null
    $partial = "$($P.target).partial"
    Copy-Item -LiteralPath $P.vhdPath -Destination $partial -Force
    Move-Item -LiteralPath $partial -Destination $P.target -Force
    $vhd = Hyper-V\Get-VHD -Path $P.target
    return @{ state = 'Off'; path = $P.target; bytes = [int64]$vhd.FileSize; capacityBytes = [int64]$vhd.Size }
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
