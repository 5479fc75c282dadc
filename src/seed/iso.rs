/*!
A small ISO 9660 writer for cloud-init NoCloud seeds: one flat root
directory of small files, readable as Joliet (Windows), Rock Ridge (Linux,
what cloud-init mounts) and plain ISO 9660 (everything else, libblkid).

# Why our own writer

Windows hosts have no `mkisofs`, so the seed must come from Rust. The
candidate crate, `hadris-iso` 2.5.0, writes an image that `isoinfo` and
`blkid` read correctly, but it stamps the current time into every volume
descriptor, directory record and Rock Ridge entry, with no option to fix it
(two runs a second apart differ), and it brings 57 crates. Seeds must be a
pure function of the plan: the same inputs give the same bytes, so a seed
can be snapshot-tested and rewritten without churn. What a seed needs is a
tiny subset of the format (Multipass writes its seeds the same way), so we
write it ourselves and check it against independent readers (`isoinfo`,
`blkid`, Linux) in `tests/seed.rs`.

# Layout

Everything is counted in 2048-byte logical sectors; the image is always a
whole number of them.

```text
sector 0-15   system area: zeros (no boot record, no partition table)
sector 16     primary volume descriptor (PVD): the volume label, the
              volume size, where the path tables and the root directory are
sector 17     supplementary volume descriptor (SVD) for Joliet: the same
              fields in UCS-2 big-endian, tagged by the escape sequence %/E
sector 18     volume descriptor set terminator
sector 19-20  ISO 9660 path table, little-endian (L) then big-endian (M)
sector 21-22  Joliet path tables, L then M
sector 23..   ISO 9660 root directory (directory records + Rock Ridge)
then          Joliet root directory (directory records, UCS-2 names)
then          file data, each file starting on a sector of its own
```

Both directory trees point at the same file data: only the names differ.

**Both-endian fields.** ECMA-119 stores most numbers twice, little-endian
then big-endian (`both32(7)` is `07 00 00 00 00 00 00 07`), so that either
kind of machine can read them without swapping. Path tables are the
exception: each is written in a single byte order, which is why there are
two of each.

**Path tables** list every directory with its parent, for readers that want
to find a directory without walking the tree. A flat seed has one
directory, so each table holds one 10-byte entry for the root.

**Directory records** describe one file or directory each: record length,
extent (first sector) and data length (both-endian), a 7-byte recording
date, flags (2 = directory), volume sequence number, then the file
identifier and, on the ISO 9660 side, a System Use area. A directory is a
run of records; a record never crosses a sector boundary (the rest of a
sector is zero-padded), records are sorted by identifier, and the first two
are `.` (identifier byte 0) and `..` (byte 1).

**Names.** The ISO 9660 tree uses level-1 identifiers (`USER_DAT.;1`: at most
8 + 3 upper-case d-characters, a mandatory `.` and the version `;1`),
de-duplicated with a numeric suffix. Nobody we care about reads them; they
exist so strict readers see a valid volume. The real names come from the
two extensions:

- **Joliet** stores names as UCS-2 big-endian in its own tree, up to 64
  characters (our limit), without version suffix (as genisoimage does).
  Windows reads this tree.
- **Rock Ridge** (RRIP 1.10, on top of SUSP, the System Use Sharing
  Protocol) adds entries to the System Use area of each ISO 9660 record.
  The root's `.` record carries `SP` (SUSP is in use, first entry, bytes
  `BE EF`) and `ER` (the extension in use is `RRIP_1991A`); every record
  carries `RR` (which RRIP entries follow; Linux stops reading a record
  whose `RR` names none of PX/TF/SL/CL), `PX` (POSIX mode, links, uid,
  gid) and, for files, `NM` (the real name). Linux prefers Rock Ridge over
  Joliet when the root has an `ER` entry, so cloud-init sees `user-data`.
  The `ER` texts are short enough that no continuation area (`CE`) is
  needed.

**Volume label.** The PVD's volume identifier holds the label as given
(`cidata`, lower case, as `cloud-localds` writes it; cloud-init looks for
either case) and the SVD holds it again in UCS-2, which libblkid and
Windows report. Labels are at most 16 characters, Joliet's limit.

**Determinism.** All dates are the fixed [`TIMESTAMP`]; nothing depends on
the clock, the host or the order of the input files.

**Empty files** have data length 0 and share the extent of whatever comes
next, as genisoimage does; readers never read them.
*/

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fsutil::{Access, atomic_write};

/// The logical sector (block) size: 2048 bytes, as on every CD.
pub const SECTOR: usize = 2048;
/// The longest file name a seed may hold (Joliet's limit).
pub const MAX_NAME_LEN: usize = 64;
/// The longest volume label (Joliet's 16 UCS-2 characters).
pub const MAX_LABEL_LEN: usize = 16;
/// Every date in the image: 2000-01-01 00:00:00 UTC.
pub const TIMESTAMP: &str = "2000-01-01T00:00:00Z";

/// The same instant as the 7-byte directory-record date (years since 1900,
/// month, day, hour, minute, second, offset from GMT in 15-minute units).
const RECORD_DATE: [u8; 7] = [100, 1, 1, 0, 0, 0, 0];
/// ... and as the 17-byte volume-descriptor date (16 digits, GMT offset).
const VOLUME_DATE: &[u8; 17] = b"2000010100000000\0";
/// "Not specified" in a volume-descriptor date field.
const NO_DATE: &[u8; 17] = b"0000000000000000\0";
/// What the application identifier says: who wrote this image.
const APPLICATION: &str = "DEVCLUSTER";

const PVD_LBA: u32 = 16;
const SVD_LBA: u32 = 17;
const TERMINATOR_LBA: u32 = 18;
const ISO_L_PATH_LBA: u32 = 19;
const ISO_M_PATH_LBA: u32 = 20;
const JOLIET_L_PATH_LBA: u32 = 21;
const JOLIET_M_PATH_LBA: u32 = 22;
const ISO_ROOT_LBA: u32 = 23;
/// One path-table entry for the root: 8 bytes + identifier byte + pad.
const PATH_TABLE_SIZE: u32 = 10;

const FLAG_DIRECTORY: u8 = 0x02;
const MODE_DIR: u32 = 0o040_755;
const MODE_FILE: u32 = 0o100_644;

// Rock Ridge `RR` flags: which RRIP entries this record carries.
const RR_PX: u8 = 0x01;
const RR_NM: u8 = 0x08;
const ER_ID: &str = "RRIP_1991A";
const ER_DESCRIPTOR: &str =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE";

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(
        "volume label `{0}` must be 1 to {MAX_LABEL_LEN} characters of a-z, A-Z, 0-9, `_` and `-`"
    )]
    Label(String),
    #[error("file name `{name}` {reason}")]
    Name { name: String, reason: &'static str },
    #[error("file name `{0}` is given more than once")]
    Duplicate(String),
    #[error("file `{name}` is {size} bytes; an ISO 9660 file holds at most 4 GiB - 1")]
    FileTooLarge { name: String, size: usize },
    #[error("the files do not fit in an ISO 9660 volume")]
    VolumeTooLarge,
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds an ISO 9660 image with Joliet and Rock Ridge holding `files` at
/// its root. The file order does not matter; the output depends only on
/// the label and the set of files.
pub fn build(label: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>, IsoError> {
    check_label(label)?;
    let mut files: Vec<(&str, &[u8])> = files.to_vec();
    files.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, data)) in files.iter().enumerate() {
        check_name(name)?;
        if i > 0 && files[i - 1].0 == *name {
            return Err(IsoError::Duplicate((*name).to_string()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(IsoError::FileTooLarge {
                name: (*name).to_string(),
                size: data.len(),
            });
        }
    }
    let iso_names = level1_names(&files);

    // Directory sizes depend only on record lengths, so lay them out with
    // placeholder extents first, then again with the real ones.
    let placeholder = vec![0u32; files.len()];
    let iso_dir_sectors = sectors(iso_directory(&files, &iso_names, 0, 0, &placeholder).len());
    let joliet_dir_sectors = sectors(joliet_directory(&files, 0, 0, &placeholder).len());
    let joliet_root_lba = ISO_ROOT_LBA + iso_dir_sectors;
    let mut next = u64::from(joliet_root_lba + joliet_dir_sectors);
    let mut extents = Vec::with_capacity(files.len());
    for (_, data) in &files {
        extents.push(u32::try_from(next).map_err(|_| IsoError::VolumeTooLarge)?);
        next += data.len().div_ceil(SECTOR) as u64;
    }
    let total = u32::try_from(next).map_err(|_| IsoError::VolumeTooLarge)?;

    let iso_dir = iso_directory(
        &files,
        &iso_names,
        ISO_ROOT_LBA,
        iso_dir_sectors * SECTOR as u32,
        &extents,
    );
    let joliet_dir = joliet_directory(
        &files,
        joliet_root_lba,
        joliet_dir_sectors * SECTOR as u32,
        &extents,
    );

    let mut image = vec![0u8; total as usize * SECTOR];
    let mut put = |lba: u32, bytes: &[u8]| {
        let at = lba as usize * SECTOR;
        image[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(
        PVD_LBA,
        &volume_descriptor(
            Descriptor::Primary,
            label,
            total,
            ISO_L_PATH_LBA,
            ISO_M_PATH_LBA,
            &root_record(ISO_ROOT_LBA, iso_dir_sectors),
        ),
    );
    put(
        SVD_LBA,
        &volume_descriptor(
            Descriptor::Joliet,
            label,
            total,
            JOLIET_L_PATH_LBA,
            JOLIET_M_PATH_LBA,
            &root_record(joliet_root_lba, joliet_dir_sectors),
        ),
    );
    put(TERMINATOR_LBA, &[255, b'C', b'D', b'0', b'0', b'1', 1]);
    put(ISO_L_PATH_LBA, &path_table(ISO_ROOT_LBA, Endian::Little));
    put(ISO_M_PATH_LBA, &path_table(ISO_ROOT_LBA, Endian::Big));
    put(
        JOLIET_L_PATH_LBA,
        &path_table(joliet_root_lba, Endian::Little),
    );
    put(JOLIET_M_PATH_LBA, &path_table(joliet_root_lba, Endian::Big));
    put(ISO_ROOT_LBA, &iso_dir);
    put(joliet_root_lba, &joliet_dir);
    for ((_, data), lba) in files.iter().zip(&extents) {
        put(*lba, data);
    }
    Ok(image)
}

/// Builds the image and writes it to `path` atomically, readable by the
/// current user only: seeds carry private keys.
pub fn write(path: &Path, label: &str, files: &[(&str, &[u8])]) -> Result<(), IsoError> {
    let image = build(label, files)?;
    atomic_write(path, &image, Access::Private).map_err(|source| IsoError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn check_label(label: &str) -> Result<(), IsoError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IsoError::Label(label.to_string()))
    }
}

fn check_name(name: &str) -> Result<(), IsoError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME_LEN {
        "is longer than 64 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        "may contain only a-z, 0-9, `-`, `_` and `.`"
    } else if name == "." || name == ".." {
        "is reserved"
    } else {
        return Ok(());
    };
    Err(IsoError::Name {
        name: name.to_string(),
        reason,
    })
}

/// ISO 9660 level-1 identifiers (`NAME.EXT;1`) for names sorted by name,
/// unique among themselves.
fn level1_names(files: &[(&str, &[u8])]) -> Vec<Vec<u8>> {
    fn d_chars(s: &str, max: usize) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' => b.to_ascii_uppercase() as char,
                b'0'..=b'9' => b as char,
                _ => '_',
            })
            .take(max)
            .collect()
    }
    let mut taken = BTreeSet::new();
    files
        .iter()
        .map(|(name, _)| {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            let (stem, ext) = (d_chars(stem, 8), d_chars(ext, 3));
            let mut candidate = format!("{stem}.{ext}");
            let mut n = 1u32;
            while taken.contains(&candidate) {
                let suffix = n.to_string();
                let keep = 8usize.saturating_sub(suffix.len());
                candidate = format!("{}{suffix}.{ext}", &stem[..stem.len().min(keep)]);
                n += 1;
            }
            taken.insert(candidate.clone());
            format!("{candidate};1").into_bytes()
        })
        .collect()
}

/// The ISO 9660 root directory with Rock Ridge entries, sorted by
/// identifier, padded to whole sectors.
fn iso_directory(
    files: &[(&str, &[u8])],
    iso_names: &[Vec<u8>],
    self_lba: u32,
    self_size: u32,
    extents: &[u32],
) -> Vec<u8> {
    let mut dot_su = Vec::new();
    dot_su.extend_from_slice(&[b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
    dot_su.extend_from_slice(&[b'R', b'R', 5, 1, RR_PX]);
    dot_su.extend_from_slice(&px(MODE_DIR, 2));
    dot_su.extend_from_slice(&er());
    let mut dotdot_su = vec![b'R', b'R', 5, 1, RR_PX];
    dotdot_su.extend_from_slice(&px(MODE_DIR, 2));

    let mut records = vec![
        dir_record(&[0], self_lba, self_size, true, &dot_su),
        dir_record(&[1], self_lba, self_size, true, &dotdot_su),
    ];
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| iso_names[a].cmp(&iso_names[b]));
    for i in order {
        let (name, data) = files[i];
        let mut su = vec![b'R', b'R', 5, 1, RR_PX | RR_NM];
        su.extend_from_slice(&[b'N', b'M', 5 + name.len() as u8, 1, 0]);
        su.extend_from_slice(name.as_bytes());
        su.extend_from_slice(&px(MODE_FILE, 1));
        records.push(dir_record(
            &iso_names[i],
            extents[i],
            data.len() as u32,
            false,
            &su,
        ));
    }
    pack(&records)
}

/// The Joliet root directory: UCS-2 names, no System Use entries.
fn joliet_directory(
    files: &[(&str, &[u8])],
    self_lba: u32,
    self_size: u32,
    extents: &[u32],
) -> Vec<u8> {
    let mut records = vec![
        dir_record(&[0], self_lba, self_size, true, &[]),
        dir_record(&[1], self_lba, self_size, true, &[]),
    ];
    // `files` is sorted by name; for ASCII names that is also UCS-2 order.
    for ((name, data), lba) in files.iter().zip(extents) {
        records.push(dir_record(&ucs2(name), *lba, data.len() as u32, false, &[]));
    }
    pack(&records)
}

/// One directory record (ECMA-119 9.1).
fn dir_record(id: &[u8], extent: u32, size: u32, dir: bool, system_use: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(34 + id.len() + system_use.len());
    r.push(0); // length, set below
    r.push(0); // extended attribute record length
    r.extend_from_slice(&both32(extent));
    r.extend_from_slice(&both32(size));
    r.extend_from_slice(&RECORD_DATE);
    r.push(if dir { FLAG_DIRECTORY } else { 0 });
    r.push(0); // file unit size (not interleaved)
    r.push(0); // interleave gap
    r.extend_from_slice(&both16(1)); // volume sequence number
    r.push(id.len() as u8);
    r.extend_from_slice(id);
    if id.len().is_multiple_of(2) {
        r.push(0); // pad so the System Use area starts on an even offset
    }
    r.extend_from_slice(system_use);
    if !r.len().is_multiple_of(2) {
        r.push(0); // records have even lengths
    }
    debug_assert!(r.len() <= 255, "directory record too long");
    r[0] = r.len() as u8;
    r
}

/// The 34-byte root record embedded in a volume descriptor.
fn root_record(lba: u32, sectors: u32) -> Vec<u8> {
    dir_record(&[0], lba, sectors * SECTOR as u32, true, &[])
}

/// Concatenates records so that none crosses a sector boundary, then pads
/// to a whole sector.
fn pack(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let used = out.len() % SECTOR;
        if used + r.len() > SECTOR {
            out.resize(out.len() + SECTOR - used, 0);
        }
        out.extend_from_slice(r);
    }
    out.resize(sectors(out.len()) as usize * SECTOR, 0);
    out
}

/// Rock Ridge `PX` (RRIP 1.10, 36 bytes): mode, links, uid 0, gid 0.
fn px(mode: u32, links: u32) -> Vec<u8> {
    let mut e = vec![b'P', b'X', 36, 1];
    e.extend_from_slice(&both32(mode));
    e.extend_from_slice(&both32(links));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(0));
    e
}

/// SUSP `ER`: announces RRIP 1.10 (`RRIP_1991A`).
fn er() -> Vec<u8> {
    let mut e = vec![
        b'E',
        b'R',
        (8 + ER_ID.len() + ER_DESCRIPTOR.len() + ER_SOURCE.len()) as u8,
        1,
        ER_ID.len() as u8,
        ER_DESCRIPTOR.len() as u8,
        ER_SOURCE.len() as u8,
        1, // extension version
    ];
    e.extend_from_slice(ER_ID.as_bytes());
    e.extend_from_slice(ER_DESCRIPTOR.as_bytes());
    e.extend_from_slice(ER_SOURCE.as_bytes());
    e
}

#[derive(Clone, Copy)]
enum Endian {
    Little,
    Big,
}

/// A path table holding only the root directory.
fn path_table(root_lba: u32, endian: Endian) -> [u8; PATH_TABLE_SIZE as usize] {
    let (lba, parent) = match endian {
        Endian::Little => (root_lba.to_le_bytes(), 1u16.to_le_bytes()),
        Endian::Big => (root_lba.to_be_bytes(), 1u16.to_be_bytes()),
    };
    [
        1, 0, lba[0], lba[1], lba[2], lba[3], parent[0], parent[1], 0, 0,
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Descriptor {
    Primary,
    Joliet,
}

/// A primary (ISO 9660) or supplementary (Joliet) volume descriptor.
fn volume_descriptor(
    kind: Descriptor,
    label: &str,
    total: u32,
    l_path: u32,
    m_path: u32,
    root: &[u8],
) -> Vec<u8> {
    let text = |s: &str, len: usize| -> Vec<u8> {
        match kind {
            Descriptor::Primary => {
                let mut v = s.as_bytes().to_vec();
                v.resize(len, b' ');
                v
            }
            Descriptor::Joliet => {
                let mut v = ucs2(s);
                while v.len() + 2 <= len {
                    v.extend_from_slice(&[0, b' ']);
                }
                v.resize(len, 0);
                v
            }
        }
    };
    let mut d = vec![0u8; SECTOR];
    d[0] = match kind {
        Descriptor::Primary => 1,
        Descriptor::Joliet => 2,
    };
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1; // version
    d[8..40].copy_from_slice(&text("", 32)); // system identifier
    d[40..72].copy_from_slice(&text(label, 32)); // volume identifier
    d[80..88].copy_from_slice(&both32(total)); // volume space size
    if kind == Descriptor::Joliet {
        d[88..91].copy_from_slice(b"%/E"); // escape sequence: UCS-2 level 3
    }
    d[120..124].copy_from_slice(&both16(1)); // volume set size
    d[124..128].copy_from_slice(&both16(1)); // volume sequence number
    d[128..132].copy_from_slice(&both16(SECTOR as u16)); // logical block size
    d[132..140].copy_from_slice(&both32(PATH_TABLE_SIZE));
    d[140..144].copy_from_slice(&l_path.to_le_bytes());
    d[148..152].copy_from_slice(&m_path.to_be_bytes());
    d[156..190].copy_from_slice(root);
    d[190..318].copy_from_slice(&text("", 128)); // volume set identifier
    d[318..446].copy_from_slice(&text("", 128)); // publisher
    d[446..574].copy_from_slice(&text("", 128)); // data preparer
    d[574..702].copy_from_slice(&text(APPLICATION, 128));
    d[702..739].copy_from_slice(&text("", 37)); // copyright file
    d[739..776].copy_from_slice(&text("", 37)); // abstract file
    d[776..813].copy_from_slice(&text("", 37)); // bibliographic file
    d[813..830].copy_from_slice(VOLUME_DATE); // creation
    d[830..847].copy_from_slice(VOLUME_DATE); // modification
    d[847..864].copy_from_slice(NO_DATE); // expiration
    d[864..881].copy_from_slice(NO_DATE); // effective
    d[881] = 1; // file structure version
    d
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn sectors(bytes: usize) -> u32 {
    bytes.div_ceil(SECTOR) as u32
}

#[cfg(test)]
mod tests {
    //! A minimal reader that checks the structure an independent reader
    //! relies on; `tests/seed.rs` reads the same images with `isoinfo`
    //! and `blkid`.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes(b[..4].try_into().unwrap())
    }

    /// Reads a both-endian u32 and checks its halves agree.
    fn both(b: &[u8]) -> u32 {
        let l = le32(b);
        assert_eq!(l, u32::from_be_bytes(b[4..8].try_into().unwrap()));
        l
    }

    struct Record {
        id: Vec<u8>,
        extent: u32,
        size: u32,
        dir: bool,
        system_use: Vec<u8>,
    }

    fn records(img: &[u8], lba: u32, size: u32) -> Vec<Record> {
        assert_eq!(size as usize % SECTOR, 0, "directory size is whole sectors");
        let dir = &img[lba as usize * SECTOR..][..size as usize];
        let mut out = Vec::new();
        for sector in dir.chunks(SECTOR) {
            let mut at = 0;
            while at < SECTOR && sector[at] != 0 {
                let len = sector[at] as usize;
                assert_eq!(len % 2, 0, "records have even length");
                assert!(at + len <= SECTOR, "record crosses a sector boundary");
                let r = &sector[at..at + len];
                assert_eq!(r[28..32], both16(1));
                let id_len = r[32] as usize;
                let su_start = 33 + id_len + (1 - id_len % 2);
                out.push(Record {
                    id: r[33..33 + id_len].to_vec(),
                    extent: both(&r[2..10]),
                    size: both(&r[10..18]),
                    dir: r[25] & FLAG_DIRECTORY != 0,
                    system_use: r[su_start.min(len)..].to_vec(),
                });
                at += len;
            }
        }
        out
    }

    /// SUSP entries of a System Use area: (signature, body).
    fn susp(su: &[u8]) -> Vec<([u8; 2], Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= su.len() {
            let len = su[at + 2] as usize;
            assert!(len >= 4 && at + len <= su.len(), "bad SUSP length");
            out.push(([su[at], su[at + 1]], su[at + 4..at + len].to_vec()));
            at += len;
        }
        out
    }

    struct Volume {
        label: String,
        /// name -> contents, read through Rock Ridge NM names.
        rock_ridge: BTreeMap<String, Vec<u8>>,
        /// name -> contents, read through the Joliet tree.
        joliet: BTreeMap<String, Vec<u8>>,
    }

    fn read(img: &[u8]) -> Volume {
        assert_eq!(img.len() % SECTOR, 0);
        assert!(img[..16 * SECTOR].iter().all(|&b| b == 0), "system area");
        let pvd = &img[16 * SECTOR..17 * SECTOR];
        let svd = &img[17 * SECTOR..18 * SECTOR];
        let term = &img[18 * SECTOR..19 * SECTOR];
        assert_eq!(&pvd[..7], b"\x01CD001\x01");
        assert_eq!(&svd[..7], b"\x02CD001\x01");
        assert_eq!(&svd[88..91], b"%/E");
        assert_eq!(&term[..7], b"\xffCD001\x01");
        for d in [pvd, svd] {
            assert_eq!(both(&d[80..88]) as usize * SECTOR, img.len());
            assert_eq!(both(&d[132..140]), PATH_TABLE_SIZE);
            assert_eq!(d[128..132], both16(2048));
        }
        let label = String::from_utf8(pvd[40..72].to_vec()).unwrap();
        let data = |r: &Record| img[r.extent as usize * SECTOR..][..r.size as usize].to_vec();

        let root = &pvd[156..190];
        let (root_lba, root_size) = (both(&root[2..10]), both(&root[10..18]));
        // The path tables name the same root, in their own byte order.
        let l = &img[le32(&pvd[140..144]) as usize * SECTOR..];
        let m = &img[u32::from_be_bytes(pvd[148..152].try_into().unwrap()) as usize * SECTOR..];
        assert_eq!(le32(&l[2..6]), root_lba);
        assert_eq!(u32::from_be_bytes(m[2..6].try_into().unwrap()), root_lba);

        let iso = records(img, root_lba, root_size);
        assert_eq!((iso[0].id.as_slice(), iso[0].dir), (&[0u8][..], true));
        assert_eq!((iso[1].id.as_slice(), iso[1].dir), (&[1u8][..], true));
        let dot = susp(&iso[0].system_use);
        assert_eq!(dot[0], (*b"SP", vec![0xBE, 0xEF, 0]), "SP comes first");
        let er = dot.iter().find(|e| &e.0 == b"ER").expect("ER in root");
        assert_eq!(&er.1[4..14], b"RRIP_1991A");
        let ids: Vec<_> = iso[2..].iter().map(|r| r.id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "records sorted by identifier");
        let mut rock_ridge = BTreeMap::new();
        for r in &iso[2..] {
            assert!(r.id.ends_with(b";1") && r.id.len() <= 14, "level-1 id");
            let entries = susp(&r.system_use);
            let rr = entries.iter().find(|e| &e.0 == b"RR").expect("RR");
            assert_eq!(rr.1, vec![RR_PX | RR_NM]);
            let nm = entries.iter().find(|e| &e.0 == b"NM").expect("NM");
            let px = entries.iter().find(|e| &e.0 == b"PX").expect("PX");
            assert_eq!(both(&px.1[0..8]), MODE_FILE);
            let name = String::from_utf8(nm.1[1..].to_vec()).unwrap();
            rock_ridge.insert(name, data(r));
        }

        let jroot = &svd[156..190];
        let jrec = records(img, both(&jroot[2..10]), both(&jroot[10..18]));
        let mut joliet = BTreeMap::new();
        for r in &jrec[2..] {
            let units: Vec<u16> =
                r.id.chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
            joliet.insert(String::from_utf16(&units).unwrap(), data(r));
        }
        Volume {
            label: label.trim_end().to_string(),
            rock_ridge,
            joliet,
        }
    }

    fn seed_files() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("user-data", b"#cloud-config\n".as_slice()),
            ("meta-data", b"instance-id: x\n".as_slice()),
            ("network-config", b"version: 2\n".as_slice()),
        ]
    }

    #[test]
    fn seed_layout_reads_back() {
        let img = build("cidata", &seed_files()).unwrap();
        let v = read(&img);
        assert_eq!(v.label, "cidata");
        let expected: BTreeMap<String, Vec<u8>> = seed_files()
            .into_iter()
            .map(|(n, d)| (n.to_string(), d.to_vec()))
            .collect();
        assert_eq!(v.rock_ridge, expected);
        assert_eq!(v.joliet, expected);
        // 23 fixed sectors, one per directory, one per (small) file.
        assert_eq!(img.len(), (23 + 2 + 3) * SECTOR);
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut reversed = seed_files();
        reversed.reverse();
        assert_eq!(
            build("cidata", &seed_files()).unwrap(),
            build("cidata", &reversed).unwrap()
        );
    }

    #[test]
    fn level1_names_are_unique_and_valid() {
        let files: Vec<(&str, &[u8])> = vec![
            ("network-config", b""),
            ("network-config-2", b""),
            ("network-config-3", b""),
            ("a.tar.gz", b""),
            (".profile", b""),
        ];
        let names = level1_names(&files);
        let strs: Vec<_> = names
            .iter()
            .map(|n| String::from_utf8(n.clone()).unwrap())
            .collect();
        assert_eq!(
            strs,
            [
                "NETWORK_.;1",
                "NETWORK1.;1",
                "NETWORK2.;1",
                "A_TAR.GZ;1",
                ".PRO;1"
            ]
        );
    }

    #[test]
    fn rejects_bad_names_and_labels() {
        let bad = |name: &str| build("cidata", &[(name, b"x".as_slice())]).unwrap_err();
        assert!(matches!(bad(""), IsoError::Name { .. }));
        assert!(matches!(bad("User-Data"), IsoError::Name { .. }));
        assert!(matches!(bad("dir/file"), IsoError::Name { .. }));
        assert!(matches!(bad("a b"), IsoError::Name { .. }));
        assert!(matches!(bad(".."), IsoError::Name { .. }));
        assert!(matches!(bad(&"a".repeat(65)), IsoError::Name { .. }));
        assert!(build("cidata", &[(&"a".repeat(64), b"x".as_slice())]).is_ok());
        let dup = build("cidata", &[("a", b"1".as_slice()), ("a", b"2".as_slice())]);
        assert!(matches!(dup, Err(IsoError::Duplicate(n)) if n == "a"));
        for label in ["", "has space", "seventeen-chars-x", "cïdata"] {
            assert!(
                matches!(build(label, &[]), Err(IsoError::Label(_))),
                "{label}"
            );
        }
        assert_eq!(
            bad("User-Data").to_string(),
            "file name `User-Data` may contain only a-z, 0-9, `-`, `_` and `.`"
        );
    }

    #[test]
    fn many_files_spill_directories_over_sectors() {
        let names: Vec<String> = (0..60)
            .map(|i| format!("{i:02}-{}", "x".repeat(60)))
            .collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .map(|n| (n.as_str(), b"data".as_slice()))
            .collect();
        let img = build("cidata", &files).unwrap();
        let v = read(&img);
        assert_eq!(v.rock_ridge.len(), 60);
        assert_eq!(v.joliet.len(), 60);
        assert!(v.rock_ridge.values().all(|d| d == b"data"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips(
            files in proptest::collection::btree_map(
                "[a-z0-9_.-]{1,64}".prop_filter("not . or ..", |n| n != "." && n != ".."),
                prop_oneof![
                    Just(0usize), Just(1), Just(2047), Just(2048), Just(2049), Just(4096), 0usize..5000,
                ].prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n)),
                1..=5,
            ),
        ) {
            let list: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            let img = build("cidata", &list).unwrap();
            let v = read(&img);
            prop_assert_eq!(&v.rock_ridge, &files);
            prop_assert_eq!(&v.joliet, &files);
            prop_assert_eq!(build("cidata", &list).unwrap(), img);
        }
    }
}
