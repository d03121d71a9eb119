//! Devices: runc's default allow rules (null, zero, full, random, urandom, tty, console, ptmx,
//! pts, mknod of anything) after a deny-all; each CRI device (a device node, or a directory of
//! them, symlinks followed) is added with its node and an allow rule; privileged containers get
//! every host device and allow-all.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::{SpecError, SpecInput, invalid, io_err};

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.into()));
    r
}

/// runc's default device rules.
fn default_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    let mut deny = rule(A, None, None, "rwm");
    deny.set_allow(false);
    vec![
        deny,
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"), // /dev/null
        rule(C, Some(1), Some(8), "rwm"), // /dev/random
        rule(C, Some(1), Some(7), "rwm"), // /dev/full
        rule(C, Some(5), Some(0), "rwm"), // /dev/tty
        rule(C, Some(1), Some(5), "rwm"), // /dev/zero
        rule(C, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(C, Some(5), Some(1), "rwm"), // /dev/console
        rule(C, Some(136), None, "rwm"),  // /dev/pts/*
        rule(C, Some(5), Some(2), "rwm"), // /dev/ptmx
    ]
}

fn device_from(path: &Path, container_path: &Path) -> Result<Option<LinuxDevice>, SpecError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(container_path.to_owned());
    d.set_typ(typ);
    d.set_major(i64::from(libc::major(rdev)));
    d.set_minor(i64::from(libc::minor(rdev)));
    d.set_file_mode(Some(meta.permissions().mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(Some(d))
}

/// Every device under `dir` (not following symlinks), as containerd's `getDevices`.
fn devices_in(
    dir: &Path,
    container_dir: &Path,
    out: &mut Vec<LinuxDevice>,
) -> Result<(), SpecError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let ft = entry.file_type().map_err(io_err(dir))?;
        if ft.is_dir() {
            let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            devices_in(&entry.path(), &container_dir.join(&name), out)?;
        } else if name != "console"
            && let Ok(Some(d)) = device_from(&entry.path(), &container_dir.join(&name))
        {
            out.push(d);
        }
    }
    Ok(())
}

/// The device nodes to create and the device cgroup rules.
pub fn devices(
    input: &SpecInput,
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices = Vec::new();
    let mut rules = default_rules();
    if privileged {
        devices_in(Path::new("/dev"), Path::new("/dev"), &mut devices)?;
        rules = vec![rule(LinuxDeviceType::A, None, None, "rwm")];
    }
    for d in &input.container.devices {
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(format!(
                "device {}: invalid permissions {:?}",
                d.host_path, d.permissions
            )));
        }
        let host = match std::fs::canonicalize(&d.host_path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(invalid(format!(
                    "device host_path {} does not exist",
                    d.host_path
                )));
            }
            Err(e) => return Err(io_err(Path::new(&d.host_path))(e)),
        };
        let container_path = if d.container_path.is_empty() {
            PathBuf::from(&d.host_path)
        } else {
            PathBuf::from(&d.container_path)
        };
        let mut found = Vec::new();
        if host.is_dir() {
            devices_in(&host, &container_path, &mut found)?;
        } else {
            match device_from(&host, &container_path)? {
                Some(dev) => found.push(dev),
                None => {
                    return Err(invalid(format!(
                        "device host_path {} is not a device node",
                        d.host_path
                    )));
                }
            }
        }
        for dev in found {
            if !privileged {
                rules.push(rule(
                    dev.typ(),
                    Some(dev.major()),
                    Some(dev.minor()),
                    access,
                ));
            }
            devices.push(dev);
        }
    }
    Ok((devices, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1 as cri;
    use crate::spec::testutil::Fixture;

    fn sys_opts(spec: &oci_spec::runtime::Spec, dst: &str) -> Vec<String> {
        let m = spec.mounts().as_ref().unwrap();
        let m = m
            .iter()
            .find(|m| m.destination() == Path::new(dst))
            .unwrap();
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn devices_and_rules() {
        let mut f = Fixture::new();
        f.container.devices = vec![cri::Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        let spec = f.ok();
        let linux = spec.linux().as_ref().unwrap();
        let devs = linux.devices().clone().unwrap();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
        assert_eq!(devs[0].typ(), LinuxDeviceType::C);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules[0].typ(), Some(LinuxDeviceType::A));
        let last = rules.last().unwrap();
        assert!(last.allow());
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
        assert_eq!(last.access().as_deref(), Some("rw"));

        f.container.devices[0].host_path = "/dev/strata-missing".into();
        assert!(f.invalid().contains("/dev/strata-missing"));
        f.container.devices[0].host_path = "/etc/hostname".into();
        assert!(f.invalid().contains("not a device"));
        f.container.devices[0].host_path = "/dev/null".into();
        f.container.devices[0].permissions = "rwx".into();
        assert!(f.invalid().contains("permissions"));
    }

    #[test]
    fn privileged_gets_host_devices_rw_sysfs() {
        let mut f = Fixture::new();
        f.make_privileged();
        let spec = f.ok();
        let linux = spec.linux().as_ref().unwrap();
        let devs = linux.devices().clone().unwrap();
        assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert!(sys_opts(&spec, "/sys").contains(&"rw".into()));
        assert!(sys_opts(&spec, "/sys/fs/cgroup").contains(&"rw".into()));
    }
}
