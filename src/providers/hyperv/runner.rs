//! Running one operation script in Windows PowerShell, and reading what it
//! says back.
//!
//! The script text is fixed: an operation's own `.ps1` followed by the
//! shared frame `common.ps1`, both embedded at build time. It goes to
//! `powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy
//! Bypass -EncodedCommand <UTF-16LE base64>` (Vagrant's invocation: no
//! quoting problems, no profile, no prompt). The operation's parameters are
//! JSON in the child's environment (`DEVCLUSTER_PARAMS`), so nothing the
//! user typed is ever parsed as PowerShell and nothing secret is on a
//! command line or in the script. The result is JSON between
//! `===Begin-Output===` / `===End-Output===`; a failure is JSON between
//! `===Begin-Error===` / `===End-Error===` with the cmdlet's message and
//! `FullyQualifiedErrorId`, which [`classify`] turns into a hint.
//!
//! The program is `powershell.exe` unless `DEVCLUSTER_POWERSHELL` names
//! another: the tests point it at a stand-in that replays recorded outputs.

use std::ffi::OsString;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// The environment variable the scripts read their parameters from.
pub const PARAMS_ENV: &str = "DEVCLUSTER_PARAMS";
/// Overrides the PowerShell program (tests, or a PowerShell elsewhere).
pub const PROGRAM_ENV: &str = "DEVCLUSTER_POWERSHELL";

const COMMON: &str = include_str!("scripts/common.ps1");

/// One operation, one embedded script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Detect,
    StorageRoot,
    EnsureNetwork,
    RemoveNetwork,
    CreateVm,
    StartVm,
    SaveVm,
    StopVm,
    VmState,
    DeleteVm,
    ClusterVms,
    RemoveStorage,
    CreateBuilder,
    PressKey,
    BuildLog,
    KeepDisk,
    RemoveGolden,
}

impl Op {
    pub const ALL: [Op; 17] = [
        Op::Detect,
        Op::StorageRoot,
        Op::EnsureNetwork,
        Op::RemoveNetwork,
        Op::CreateVm,
        Op::StartVm,
        Op::SaveVm,
        Op::StopVm,
        Op::VmState,
        Op::DeleteVm,
        Op::ClusterVms,
        Op::RemoveStorage,
        Op::CreateBuilder,
        Op::PressKey,
        Op::BuildLog,
        Op::KeepDisk,
        Op::RemoveGolden,
    ];

    /// The script's file name without `.ps1`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Detect => "detect",
            Op::StorageRoot => "storage_root",
            Op::EnsureNetwork => "ensure_network",
            Op::RemoveNetwork => "remove_network",
            Op::CreateVm => "create_vm",
            Op::StartVm => "start_vm",
            Op::SaveVm => "save_vm",
            Op::StopVm => "stop_vm",
            Op::VmState => "vm_state",
            Op::DeleteVm => "delete_vm",
            Op::ClusterVms => "cluster_vms",
            Op::RemoveStorage => "remove_storage",
            Op::CreateBuilder => "create_builder",
            Op::PressKey => "press_key",
            Op::BuildLog => "build_log",
            Op::KeepDisk => "keep_disk",
            Op::RemoveGolden => "remove_golden",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Op::Detect => include_str!("scripts/detect.ps1"),
            Op::StorageRoot => include_str!("scripts/storage_root.ps1"),
            Op::EnsureNetwork => include_str!("scripts/ensure_network.ps1"),
            Op::RemoveNetwork => include_str!("scripts/remove_network.ps1"),
            Op::CreateVm => include_str!("scripts/create_vm.ps1"),
            Op::StartVm => include_str!("scripts/start_vm.ps1"),
            Op::SaveVm => include_str!("scripts/save_vm.ps1"),
            Op::StopVm => include_str!("scripts/stop_vm.ps1"),
            Op::VmState => include_str!("scripts/vm_state.ps1"),
            Op::DeleteVm => include_str!("scripts/delete_vm.ps1"),
            Op::ClusterVms => include_str!("scripts/cluster_vms.ps1"),
            Op::RemoveStorage => include_str!("scripts/remove_storage.ps1"),
            Op::CreateBuilder => include_str!("scripts/create_builder.ps1"),
            Op::PressKey => include_str!("scripts/press_key.ps1"),
            Op::BuildLog => include_str!("scripts/build_log.ps1"),
            Op::KeepDisk => include_str!("scripts/keep_disk.ps1"),
            Op::RemoveGolden => include_str!("scripts/remove_golden.ps1"),
        }
    }

    /// The whole script PowerShell runs: the operation, then the frame
    /// that reads the parameters and calls it.
    pub fn script(self) -> String {
        format!("{}\n{}", self.source(), COMMON)
    }
}

/// `-EncodedCommand`'s argument: UTF-16LE, base64.
pub fn encode_command(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The flags before the encoded script (Vagrant's: no logo, no profile,
/// never a prompt, no execution policy in the way).
pub const FLAGS: [&str; 6] = [
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
];

/// The arguments after the program name.
pub fn arguments(script: &str) -> Vec<OsString> {
    FLAGS
        .into_iter()
        .map(OsString::from)
        .chain([OsString::from(encode_command(script))])
        .collect()
}

/// The PowerShell program: `DEVCLUSTER_POWERSHELL`, else `powershell.exe`
/// (Windows PowerShell 5.1, which has the Hyper-V module; PowerShell 7
/// loads it too, but is not on every host).
pub fn program() -> PathBuf {
    std::env::var_os(PROGRAM_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("powershell.exe"))
}

/// The error record a script reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PsError {
    pub message: String,
    /// `FullyQualifiedErrorId`, e.g. `InvalidOperation,Microsoft.HyperV.PowerShell.Commands.GetVM`.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub exception: String,
}

/// What went wrong in PowerShell, as far as devcluster can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Neither an administrator nor in Hyper-V Administrators.
    NotAdmin,
    /// The Hyper-V module or the hypervisor is missing.
    NotEnabled,
    /// PowerShell runs in ConstrainedLanguage (or another restricted) mode.
    ConstrainedLanguage,
    Other,
}

/// Recognises the failures a hint exists for. Matches the stable parts:
/// the error id where Hyper-V sets one, otherwise the English message
/// (Windows localises messages, not error ids).
pub fn classify(e: &PsError) -> Cause {
    let id = e.id.to_ascii_lowercase();
    let msg = e.message.to_ascii_lowercase();
    if id == "devcluster.languagemode"
        || id.starts_with("methodinvocationnotsupportedinconstrainedlanguage")
        || msg.contains("only on core types in this language mode")
        || msg.contains("constrainedlanguage")
    {
        return Cause::ConstrainedLanguage;
    }
    if id.starts_with("commandnotfoundexception")
        && (msg.contains("hyper-v\\") || msg.contains("get-vm"))
        || msg.contains("the hyper-v module")
        || msg.contains("hyper-v is not installed")
        || msg.contains("hypervisor is not running")
    {
        return Cause::NotEnabled;
    }
    if msg.contains("you do not have the required permission")
        || msg.contains("access is denied")
        || id.contains("unauthorizedaccess")
    {
        return Cause::NotAdmin;
    }
    Cause::Other
}

/// The exact command that puts the current user into Hyper-V
/// Administrators (by SID, so it works on every Windows language).
pub const ADD_TO_HYPERV_ADMINS: &str =
    "Add-LocalGroupMember -SID 'S-1-5-32-578' -Member \"$env:USERDOMAIN\\$env:USERNAME\"";
/// The exact command that enables Hyper-V.
pub const ENABLE_HYPERV: &str =
    "Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All";

/// The fix for a recognised failure.
pub fn hint(cause: Cause) -> Option<String> {
    match cause {
        Cause::NotAdmin => Some(format!(
            "run devcluster as an administrator, or join Hyper-V Administrators (S-1-5-32-578) once: in an elevated PowerShell, `{ADD_TO_HYPERV_ADMINS}`, then sign out and in again"
        )),
        Cause::NotEnabled => Some(format!(
            "enable Hyper-V (Windows 10/11 Pro, Enterprise or Education; Windows Server): in an elevated PowerShell, `{ENABLE_HYPERV}`, then restart Windows"
        )),
        Cause::ConstrainedLanguage => Some(
            "PowerShell runs in ConstrainedLanguage mode here (an AppLocker or WDAC policy, or __PSLockdownPolicy): devcluster's Hyper-V scripts need FullLanguage; ask whoever manages this machine to allow it, or use --provider virtualbox".into(),
        ),
        Cause::Other => None,
    }
}

/// What a script printed: its result or its error, or neither.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok(Value),
    Failed(PsError),
    /// No markers, or JSON that does not parse.
    Garbled(String),
}

fn between<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = text.find(begin)? + begin.len();
    let len = text[start..].find(end)?;
    Some(text[start..start + len].trim())
}

/// Reads a script's stdout.
pub fn parse_reply(stdout: &str) -> Reply {
    if let Some(err) = between(stdout, "===Begin-Error===", "===End-Error===") {
        return match serde_json::from_str::<PsError>(err) {
            Ok(e) => Reply::Failed(e),
            Err(e) => Reply::Garbled(format!("error record: {e}")),
        };
    }
    match between(stdout, "===Begin-Output===", "===End-Output===") {
        Some(out) => match serde_json::from_str(out) {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Garbled(format!("result: {e}")),
        },
        None => Reply::Garbled("no ===Begin-Output=== marker".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_parses_and_is_snapshotted() {
        for op in Op::ALL {
            let script = op.script();
            crate::test_support::assert_pwsh_parses(op.name(), &script);
            insta::assert_snapshot!(format!("script_{}", op.name()), script);
        }
    }

    #[test]
    fn scripts_call_hyperv_cmdlets_module_qualified() {
        // VMware PowerCLI defines Get-VM too: every Hyper-V cmdlet is
        // `Hyper-V\`-qualified.
        let cmdlets = [
            "Get-VM ",
            "New-VM ",
            "Set-VM ",
            "Start-VM ",
            "Stop-VM ",
            "Save-VM ",
            "Remove-VM ",
            "Get-VMSwitch",
            "New-VMSwitch",
            "New-VHD",
            "Get-VHD",
            "Resize-VHD",
            "Get-VMHost",
            "Set-VMFirmware",
            "Set-VMNetworkAdapter",
            "Add-VMDvdDrive",
            "Get-VMDvdDrive",
            "Get-VMHardDiskDrive",
            "Remove-VMSavedState",
            "Get-VMIntegrationService",
            "Enable-VMIntegrationService",
            "Convert-VHD",
        ];
        for op in Op::ALL {
            for line in op
                .script()
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
            {
                for c in cmdlets {
                    for (at, _) in line.match_indices(c) {
                        let before = &line[..at];
                        assert!(
                            before.ends_with("Hyper-V\\"),
                            "{}: `{c}` is not Hyper-V\\-qualified in `{line}`",
                            op.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn parameters_never_enter_the_script_text() {
        for op in Op::ALL {
            let s = op.script();
            assert!(s.contains("$env:DEVCLUSTER_PARAMS"), "{}", op.name());
            assert!(
                !s.contains("{{") && !s.contains("Invoke-Expression"),
                "{}",
                op.name()
            );
        }
    }

    #[test]
    fn encoded_command_is_utf16le_base64() {
        // `[Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes('dir'))`
        // is `ZABpAHIA` (Microsoft's about_PowerShell_exe example uses the
        // same encoding).
        assert_eq!(encode_command("dir"), "ZABpAHIA");
        let args = arguments("Get-Date");
        assert_eq!(args[..6], FLAGS.map(OsString::from));
        assert_eq!(args[6], OsString::from(encode_command("Get-Date")));
    }

    #[test]
    fn replies_between_markers() {
        let out = "noise\r\n===Begin-Output===\r\n{\"state\":\"Running\"}\r\n===End-Output===\r\n";
        assert_eq!(
            parse_reply(out),
            Reply::Ok(serde_json::json!({"state": "Running"}))
        );
        let err = "===Begin-Error===\n{\"message\":\"m\",\"id\":\"x\",\"category\":\"c\",\"exception\":\"e\"}\n===End-Error===\n";
        assert!(matches!(parse_reply(err), Reply::Failed(e) if e.message == "m"));
        assert!(matches!(parse_reply("hello"), Reply::Garbled(_)));
        assert!(matches!(
            parse_reply("===Begin-Output===\n{not json\n===End-Output==="),
            Reply::Garbled(_)
        ));
    }
}
