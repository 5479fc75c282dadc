//! Command-line types (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spec::{ProviderKind, parse_disk_gib, parse_memory_mib};
use crate::ui::OutputFormat;

/// A real multi-node Kubernetes cluster on your laptop: a Linux control
/// plane plus Linux and Windows Server workers, as VMs on libvirt/QEMU,
/// Hyper-V or VirtualBox.
#[derive(Debug, Parser)]
#[command(
    name = "devcluster",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Which cluster: lowercase letters, digits and '-', starting with a
    /// letter, at most 10 characters.
    #[arg(
        long,
        global = true,
        env = "DEVCLUSTER_CLUSTER",
        default_value = "dev",
        value_name = "NAME"
    )]
    pub cluster: String,

    /// More logging on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Plain step lines instead of progress bars (automatic when stderr is
    /// not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the cluster, or finish creating it.
    Up(UpArgs),
    /// Show the cluster's nodes.
    Status(OutputArgs),
    /// Show all clusters.
    List(OutputArgs),
    /// Delete the cluster: VMs, disks, network, state, and its kubeconfig entries.
    Destroy(DestroyArgs),
    /// Show, locate, merge or remove the cluster's kubeconfig entries.
    ///
    /// Without a flag: print the path of the cluster's admin kubeconfig
    /// (--path), e.g. `export KUBECONFIG=$(devcluster kubeconfig)`.
    Kubeconfig(KubeconfigArgs),
    /// Make a cluster's context kubectl's current context; without NAME,
    /// list the devcluster contexts.
    Use(UseArgs),
    /// Save every VM's memory to disk and stop it (frees the host's RAM).
    Suspend,
    /// Restore suspended VMs, then resync guest clocks and check SSH.
    Resume,
    /// Shut every VM down (gracefully; forced after a timeout).
    Halt(HaltArgs),
    /// Boot halted VMs again (same IPs, same certificates).
    Start,
    /// Open a shell on a node, or run a command there and return its exit code.
    Ssh(SshArgs),
    /// Show a node's provisioning log.
    Logs(LogsArgs),
    /// Check the host: hypervisors, permissions, virtualization, memory,
    /// disk, tools, files, network; each problem with its fix.
    ///
    /// Exits 0 when no check fails (warnings allowed), 1 otherwise.
    Doctor(DoctorArgs),
    /// Open the cluster's page in the browser: nodes, steps, live logs,
    /// lifecycle buttons and the Kubernetes view (a local server, until Ctrl-C).
    Dashboard(DashboardArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Manage the disk images nodes boot from.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Grow or shrink a cluster: add a worker, or drain and remove one.
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Add a worker: create its VM, prepare it and join it to the cluster.
    Add(NodeAddArgs),
    /// Drain a worker, delete it from Kubernetes and delete its VM.
    Remove(NodeRemoveArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("os").required(true).args(["linux", "windows"])))]
pub struct NodeAddArgs {
    /// A Linux worker (the lowest free NAME-wN), sized like the cluster's
    /// other Linux workers.
    #[arg(long)]
    pub linux: bool,

    /// A Windows worker.
    #[arg(long)]
    pub windows: bool,

    /// Never download: the node's image must be in the cache.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct NodeRemoveArgs {
    /// The worker to remove, e.g. dev-w1.
    pub node: String,

    /// Remove the VM even when the API server cannot drain the node (it
    /// does not answer): its pods are not evicted gracefully.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Register a local disk image under NAME (copied into the image cache).
    Import(ImportArgs),
    /// Show the catalog, the cache and golden disks: what is cached, its
    /// size, and which clusters use it.
    List(OutputArgs),
    /// Download an image into the cache (verified, resumable), so later
    /// runs need no network.
    Pull(PullArgs),
    /// Delete an image's cached files (and the entry of an imported image).
    Remove(RemoveArgs),
    /// Delete cached images and golden disks that no cluster uses.
    Prune,
    /// Build the base disk of a Windows image: a builder VM installs
    /// Windows from the evaluation ISO and sysprep powers it off.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Windows image, e.g. windows-server-2025.
    pub name: String,
    /// The provider to build it for (libvirt, hyperv or virtualbox).
    #[arg(long, value_enum)]
    pub provider: Option<ProviderKind>,
    /// Build even under software emulation (no working KVM): takes hours.
    #[arg(long)]
    pub allow_software_emulation: bool,
    /// Use the cache only: fail if the ISO is not there.
    #[arg(long)]
    pub offline: bool,
    /// Accept the evaluation licence of the Windows Server ISO.
    #[arg(long)]
    pub accept_license: bool,
    /// The disk and NIC of Windows on libvirt: emulated (SATA + e1000e,
    /// the default) or virtio (with the pinned virtio-win drivers); the
    /// same choice as `[libvirt] windows_devices` for `up`.
    #[arg(long, value_enum)]
    pub windows_devices: Option<crate::spec::WindowsDevices>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, e.g. ubuntu-24.04 (see `devcluster images list`).
    pub name: String,
    /// Get (and convert) the file this provider boots; without it, every
    /// artifact of the image.
    #[arg(long, value_enum)]
    pub provider: Option<ProviderKind>,
    /// Use the cache only: fail if the image is not there.
    #[arg(long)]
    pub offline: bool,
    /// Accept the image's licence (required for evaluation media such as
    /// Windows Server).
    #[arg(long)]
    pub accept_license: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The image.
    pub name: String,
    /// Remove it even if clusters use it (their VMs keep working).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name to use with --linux-image / --windows-image.
    pub name: String,
    /// The disk image file (qcow2 for libvirt).
    pub path: PathBuf,
    /// The image's operating system.
    #[arg(long, value_enum)]
    pub os: crate::plan::Os,
    /// The image's own login user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// How the image boots.
    #[arg(long, value_enum, default_value_t = crate::providers::Firmware::Uefi)]
    pub firmware: crate::providers::Firmware,
    /// The image's bootloader is signed, so Secure Boot can stay on.
    #[arg(long)]
    pub secure_boot: bool,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Linux workers (0-9; default 1).
    #[arg(long, env = "DEVCLUSTER_WORKERS", value_name = "N")]
    pub workers: Option<u32>,

    /// Windows Server workers (0-9; default 0).
    #[arg(long, env = "DEVCLUSTER_WINDOWS_WORKERS", value_name = "N")]
    pub windows_workers: Option<u32>,

    /// Hypervisor to use; auto picks the first usable one.
    #[arg(long, value_enum, env = "DEVCLUSTER_PROVIDER")]
    pub provider: Option<ProviderKind>,

    /// Kubernetes minor version to install, e.g. 1.36.
    #[arg(long, env = "DEVCLUSTER_KUBERNETES_VERSION", value_name = "X.Y")]
    pub kubernetes_version: Option<String>,

    /// Config file (default: ./devcluster.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Stop after the VMs are up and prepared (machines only).
    #[arg(long)]
    pub no_kubernetes: bool,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Merge the kubeconfig context but keep kubectl's current context.
    #[arg(long)]
    pub no_switch_context: bool,

    /// Never download: images must already be in the cache
    /// (`devcluster images pull`). Config: `offline = true`.
    #[arg(long)]
    pub offline: bool,

    /// Accept the licences of the images used (required to download
    /// evaluation media such as Windows Server).
    #[arg(long)]
    pub accept_license: bool,

    /// Build a missing Windows base disk even under software emulation
    /// (no working KVM): takes hours.
    #[arg(long)]
    pub allow_software_emulation: bool,

    /// Output format of --dry-run.
    #[arg(short, long, value_enum, default_value_t = crate::ui::OutputFormat::Table)]
    pub output: OutputFormat,

    /// Image for Linux nodes (a name from the image catalog or `images import`).
    #[arg(long, value_name = "NAME")]
    pub linux_image: Option<String>,

    /// Image for Windows nodes.
    #[arg(long, value_name = "NAME")]
    pub windows_image: Option<String>,

    /// Control-plane vCPUs (at least 2).
    #[arg(long, value_name = "N", help_heading = "Machine sizes")]
    pub control_plane_cpus: Option<u32>,

    /// Control-plane memory: MiB, or with a unit (4G); at least 2048 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_mib, help_heading = "Machine sizes")]
    pub control_plane_memory: Option<u32>,

    /// Control-plane disk: GiB, or 40G.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_gib, help_heading = "Machine sizes")]
    pub control_plane_disk: Option<u32>,

    /// vCPUs of each Linux worker.
    #[arg(long, value_name = "N", help_heading = "Machine sizes")]
    pub worker_cpus: Option<u32>,

    /// Memory of each Linux worker: MiB, or with a unit (2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_mib, help_heading = "Machine sizes")]
    pub worker_memory: Option<u32>,

    /// Disk of each Linux worker: GiB, or 40G.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_gib, help_heading = "Machine sizes")]
    pub worker_disk: Option<u32>,

    /// vCPUs of each Windows worker (at least 2).
    #[arg(long, value_name = "N", help_heading = "Machine sizes")]
    pub windows_cpus: Option<u32>,

    /// Memory of each Windows worker: MiB, or with a unit (4G); at least 4096 MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_memory_mib, help_heading = "Machine sizes")]
    pub windows_memory: Option<u32>,

    /// Disk of each Windows worker: GiB, or 64G.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_gib, help_heading = "Machine sizes")]
    pub windows_disk: Option<u32>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Destroy every devcluster cluster.
    #[arg(long)]
    pub all: bool,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").args(["print", "path", "merge", "remove"])))]
pub struct KubeconfigArgs {
    /// Print the cluster's admin kubeconfig, private key included.
    #[arg(long)]
    pub print: bool,

    /// Print the path of the cluster's admin kubeconfig (the default).
    #[arg(long)]
    pub path: bool,

    /// Add or update the cluster's entries (all named devcluster-NAME) in
    /// your kubeconfig ($KUBECONFIG or ~/.kube/config) and switch to them.
    #[arg(long)]
    pub merge: bool,

    /// Remove the cluster's entries from your kubeconfig.
    #[arg(long)]
    pub remove: bool,

    /// With --merge: keep kubectl's current context.
    #[arg(long, requires = "merge")]
    pub no_switch_context: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL only; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,

    /// The local port (default: any free one).
    #[arg(long, value_name = "P", default_value_t = 0)]
    pub port: u16,

    /// `json` prints the URL and the token as one JSON line, for scripts.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct UseArgs {
    /// The cluster to switch to.
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The node, e.g. dev-cp or dev-w1.
    pub node: String,
    /// The command to run (after `--`); without it, an interactive shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The node, e.g. dev-cp or dev-w1.
    pub node: String,
    /// Keep printing what is appended.
    #[arg(short, long)]
    pub follow: bool,
    /// The VM's serial console (boot messages) instead of the steps' log.
    #[arg(long)]
    pub serial: bool,
}

#[derive(Debug, Args)]
pub struct HaltArgs {
    /// Seconds to wait for a graceful shutdown before powering a VM off.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check this provider only (default: the configured one; auto: every
    /// provider's section).
    #[arg(long, value_enum, env = "DEVCLUSTER_PROVIDER")]
    pub provider: Option<ProviderKind>,

    /// Config file (default: ./devcluster.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}
