# ACPI power-button shutdown with nobody logged on: without this policy a
# Windows Server ignores the request and halt always ends forced.
param([string]$SeedDir)
$ErrorActionPreference = 'Stop'
Set-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System' -Name shutdownwithoutlogon -Value 1 -Type DWord
