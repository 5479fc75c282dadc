# devcluster op: stop_vm — a shutdown through the guest's shutdown
# integration service (Stop-VM), then Stop-VM -TurnOff once timeoutSeconds
# have passed. Off, saved or absent is already off (a saved VM keeps its
# memory: start restores it).
function Invoke-Op($P) {
    $vm = Hyper-V\Get-VM -Name $P.name -ErrorAction SilentlyContinue
    if (-not $vm) { return @{ result = 'already-off'; state = 'Absent' } }
    $state = "$($vm.State)"
    if ($state -eq 'Off' -or $state -eq 'Saved') { return @{ result = 'already-off'; state = $state } }
    $job = Hyper-V\Stop-VM -VM $vm -Force -AsJob
    $deadline = (Get-Date).AddSeconds($P.timeoutSeconds)
    while ((Get-Date) -lt $deadline) {
        if ("$((Hyper-V\Get-VM -Name $P.name).State)" -eq 'Off') {
            Remove-Job -Job $job -Force -ErrorAction SilentlyContinue
            return @{ result = 'graceful'; state = 'Off' }
        }
        Start-Sleep -Seconds 1
    }
    Stop-Job -Job $job -ErrorAction SilentlyContinue
    Remove-Job -Job $job -Force -ErrorAction SilentlyContinue
    Hyper-V\Stop-VM -VM $vm -TurnOff -Force
    return @{ result = 'forced'; state = "$((Hyper-V\Get-VM -Name $P.name).State)" }
}
