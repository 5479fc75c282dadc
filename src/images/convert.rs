//! Conversion to the disk format a provider boots: libvirt uses qcow2
//! (overlays on a qcow2 base), Hyper-V VHDX (Generation 2 VMs), VirtualBox
//! VDI (VMDK and VHD as they are). Done by `qemu-img convert`; the result
//! is cached next to the download as `<source sha256>.converted.<format>`,
//! so it happens once per image and provider. ISO files are installation
//! media, never converted.

use std::path::{Path, PathBuf};

use super::cache::{self, Cached};
use super::download::with_suffix;
use super::{Fetch, Format, ImageError};
use crate::dirs::Dirs;
use crate::spec::ProviderKind;

/// Whether `provider` boots a disk of `format` as it is.
pub fn accepts(provider: ProviderKind, format: Format) -> bool {
    match provider {
        ProviderKind::Libvirt => format == Format::Qcow2,
        ProviderKind::Hyperv => format == Format::Vhdx,
        ProviderKind::Virtualbox => matches!(format, Format::Vdi | Format::Vmdk | Format::Vhd),
        ProviderKind::Auto => true,
    }
}

/// The format a disk is converted to for `provider`.
pub fn target(provider: ProviderKind) -> Format {
    match provider {
        ProviderKind::Libvirt | ProviderKind::Auto => Format::Qcow2,
        ProviderKind::Hyperv => Format::Vhdx,
        ProviderKind::Virtualbox => Format::Vdi,
    }
}

/// qemu-img's name of a format.
fn qemu_name(f: Format) -> &'static str {
    match f {
        Format::Vhd => "vpc",
        other => other.as_str(),
    }
}

/// How to get qemu-img on this platform.
pub fn install_hint() -> &'static str {
    if cfg!(windows) {
        "install QEMU for Windows (`winget install SoftwareFreedomConservancy.QEMU`, or https://qemu.weilnetz.de/w64/) and put qemu-img.exe on PATH, or set DEVCLUSTER_QEMU_IMG to its path; or use an image whose artifact already has the provider's format"
    } else if cfg!(target_os = "macos") {
        "install qemu-img with `brew install qemu`, or set DEVCLUSTER_QEMU_IMG to its path"
    } else {
        "install qemu-img (Debian/Ubuntu: `sudo apt install qemu-utils`; Fedora: `sudo dnf install qemu-img`), or set DEVCLUSTER_QEMU_IMG to its path"
    }
}

/// qemu-img: `explicit`, else `DEVCLUSTER_QEMU_IMG`, else on PATH (and
/// QEMU's default install directory on Windows).
pub fn find_qemu_img(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("DEVCLUSTER_QEMU_IMG").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let exe = if cfg!(windows) {
        "qemu-img.exe"
    } else {
        "qemu-img"
    };
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(exe)).collect())
        .unwrap_or_default();
    if cfg!(windows) {
        candidates.push(PathBuf::from(r"C:\Program Files\qemu\qemu-img.exe"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The file `provider` boots for a cached artifact: the artifact itself,
/// or its conversion (made now if needed).
pub async fn for_provider(
    dirs: &Dirs,
    name: &str,
    cached: &Cached,
    provider: ProviderKind,
    fetch: &Fetch<'_>,
) -> Result<PathBuf, ImageError> {
    if cached.format == Format::Iso || accepts(provider, cached.format) {
        return Ok(cached.path.clone());
    }
    let to = target(provider);
    let dest =
        cache::image_dir(dirs, name).join(format!("{}.converted.{}", cached.sha256, to.as_str()));
    if dest.is_file() {
        return Ok(dest);
    }
    let no_tool = || ImageError::NoConverter {
        path: cached.path.clone(),
        from: cached.format.as_str(),
        to: to.as_str(),
    };
    let tool = find_qemu_img(fetch.qemu_img.as_deref()).ok_or_else(no_tool)?;
    let _lock = cache::lock(
        dirs,
        &format!("{name}-{}-{}", &cached.sha256[..16], to.as_str()),
        fetch.progress,
        name,
    )
    .await?;
    if dest.is_file() {
        return Ok(dest);
    }
    fetch.progress.note(
        name,
        &format!(
            "converting {} to {} for {provider} with qemu-img",
            cached.format.as_str(),
            to.as_str()
        ),
    );
    let tmp = with_suffix(&dest, ".tmp");
    let mut cmd = tokio::process::Command::new(&tool);
    cmd.arg("convert")
        .args(["-f", qemu_name(cached.format), "-O", qemu_name(to)]);
    if to == Format::Vhdx {
        cmd.args(["-o", "subformat=dynamic"]);
    }
    cmd.arg(&cached.path).arg(&tmp);
    let out = match cmd.output().await {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_tool()),
        Err(source) => {
            return Err(ImageError::Io {
                what: "cannot run",
                path: tool,
                source,
            });
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ImageError::Convert {
            path: cached.path.clone(),
            to: to.as_str(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    std::fs::rename(&tmp, &dest).map_err(|source| ImageError::Io {
        what: "cannot write",
        path: dest.clone(),
        source,
    })?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_provider_boots() {
        assert!(accepts(ProviderKind::Libvirt, Format::Qcow2));
        assert!(!accepts(ProviderKind::Libvirt, Format::Vhdx));
        assert!(!accepts(ProviderKind::Hyperv, Format::Qcow2));
        assert!(
            !accepts(ProviderKind::Hyperv, Format::Vhd),
            "Gen 2 needs VHDX"
        );
        assert!(accepts(ProviderKind::Virtualbox, Format::Vmdk));
        assert_eq!(target(ProviderKind::Hyperv), Format::Vhdx);
        assert_eq!(target(ProviderKind::Virtualbox), Format::Vdi);
        assert_eq!(qemu_name(Format::Vhd), "vpc");
    }

    #[test]
    fn a_missing_tool_is_not_found() {
        assert_eq!(
            find_qemu_img(Some(Path::new("/nonexistent/qemu-img"))),
            None
        );
        assert!(install_hint().contains("qemu"));
    }
}
