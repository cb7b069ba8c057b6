//! A writer of the `newc` cpio format, which is what the kernel unpacks as an initramfs.

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Builds an archive in memory; entries are written in the order added.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[]);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name = path.trim_start_matches('/');
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        pad4(&mut self.bytes);
        self.bytes.extend_from_slice(data);
        pad4(&mut self.bytes);
    }
}

fn pad4(bytes: &mut Vec<u8>) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_cpio_tool_reads_it_back() {
        let mut archive = Archive::default();
        archive.dir("/bin");
        archive.file("/bin/hello", 0o755, b"#!/bin/sh\necho hi\n");
        archive.symlink("/bin/sh", "busybox");
        archive.char_device("/dev/console", 0o600, 5, 1);
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (apt package cpio) must be installed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&bytes)
            .expect("write");
        let out = child.wait_with_output().expect("cpio");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "bin/hello",
            "bin/sh -> busybox",
            "dev/console",
            "drwxr-xr-x",
        ] {
            assert!(
                listing.contains(needle),
                "{needle} missing from:\n{listing}"
            );
        }
        assert!(
            listing.contains(" 18 "),
            "the file size (18 bytes) is missing:\n{listing}"
        );
    }
}
