# devcluster base-image build, run at first logon of the builder VM
# (autounattend.xml's FirstLogonCommands) from the build seed CD.
#
# Runs the build steps in order, each once: a done marker per step under
# C:\ProgramData\devcluster\build. A step that needs a reboot exits with
# code 3010; this script then registers itself to run again at the next
# logon (RunOnce; AutoLogon is on while building), reboots, and carries on
# where it stopped. Every phase is written to COM1 as
# "devcluster-build: phase NAME", which the host reads from the serial log
# (on Hyper-V: from guest key-value pairs) to show progress and to notice
# a stall; a failure is written as
# "devcluster-build: failed NAME: MESSAGE" and the VM stays up to be
# inspected over its console.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$SeedDir = Split-Path -Parent $MyInvocation.MyCommand.Path
$StateDir = 'C:\ProgramData\devcluster\build'
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null

function Write-Serial([string]$Line) {
    $log = Join-Path $StateDir 'build.log'
    Add-Content -Path $log -Value $Line
    # Hyper-V has no serial file: each line is also its own guest key-value
    # pair (Data Exchange), DevclusterBuildNNN numbered by its line in the
    # log, so no line is lost to the size of one value and a new line is a
    # new item. Elsewhere the Guest key is normally absent (an item there
    # would be harmless).
    $kvp = 'HKLM:\SOFTWARE\Microsoft\Virtual Machine\Guest'
    try {
        if (Test-Path $kvp) {
            $n = @(Get-Content -Path $log).Count
            $value = $Line.Substring(0, [Math]::Min($Line.Length, 1000))
            New-ItemProperty -Path $kvp -Name ('DevclusterBuild{0:D3}' -f $n) -Value $value -PropertyType String -Force | Out-Null
        }
    } catch {
        # No data exchange: the serial port and the log file remain.
    }
    try {
        $port = New-Object System.IO.Ports.SerialPort 'COM1', 115200
        $port.Open()
        $port.WriteLine($Line)
        $port.Close()
    } catch {
        # No serial port (Hyper-V without a COM pipe): the log file remains.
    }
}

$steps = @(
    '10-sshd',
    '20-shutdown-without-logon',
    '30-containers',
    '40-time-sync',
    '90-sysprep'
)

foreach ($step in $steps) {
    $marker = Join-Path $StateDir "$step.done"
    if (Test-Path $marker) { continue }
    Write-Serial "devcluster-build: phase $step"
    try {
        & powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File (Join-Path $SeedDir "$step.ps1") -SeedDir $SeedDir
        $code = $LASTEXITCODE
    } catch {
        Write-Serial "devcluster-build: failed ${step}: $($_.Exception.Message)"
        exit 1
    }
    if ($code -eq 3010) {
        Write-Serial "devcluster-build: reboot $step"
        $again = "powershell.exe -NoProfile -ExecutionPolicy Bypass -File `"$($MyInvocation.MyCommand.Path)`""
        Set-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce' -Name 'devcluster-build' -Value $again
        Restart-Computer -Force
        exit 0
    }
    if ($code -ne 0) {
        Write-Serial "devcluster-build: failed ${step}: exit code $code"
        exit $code
    }
    New-Item -ItemType File -Force -Path $marker | Out-Null
}
