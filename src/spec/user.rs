//! The container's uid, gid and supplementary groups, resolved against the image's `/etc/passwd`
//! and `/etc/group` (read from the layers, see [`super::layers`]), as containerd does:
//! - the user string is `run_as_username`, else `run_as_user`, else the image's `USER`; a
//!   `run_as_group` is appended as `:gid` (and needs a user);
//! - `name` -> uid and primary gid from passwd (unknown name: error); `uid` -> the gid of the
//!   passwd entry with that uid, or 0 when there is none; `user:group` -> each part numeric or
//!   looked up (the group in /etc/group);
//! - supplementary groups: the primary gid, plus (policy Merge) every group of /etc/group listing
//!   the user by name (except a group named like the user), plus the CRI `supplemental_groups`;
//!   policy Strict leaves out the image's groups. Sorted, without duplicates.

use super::{SpecError, invalid, layers};
use crate::cri::v1 as cri;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

impl ResolvedUser {
    pub fn to_oci(&self) -> Result<oci_spec::runtime::User, SpecError> {
        Ok(oci_spec::runtime::UserBuilder::default()
            .uid(self.uid)
            .gid(self.gid)
            .additional_gids(self.additional_gids.clone())
            .build()?)
    }
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The image's user database, read lazily from the layers.
struct Db<'a> {
    layers: &'a [std::path::PathBuf],
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> Db<'a> {
    fn new(layers: &'a [std::path::PathBuf]) -> Self {
        Db {
            layers,
            passwd: None,
            group: None,
        }
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry], SpecError> {
        if self.passwd.is_none() {
            let text = layers::read_file(self.layers, "etc/passwd")?.unwrap_or_default();
            self.passwd = Some(parse_passwd(&String::from_utf8_lossy(&text)));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry], SpecError> {
        if self.group.is_none() {
            let text = layers::read_file(self.layers, "etc/group")?.unwrap_or_default();
            self.group = Some(parse_group(&String::from_utf8_lossy(&text)));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(':').collect();
            if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(':').collect();
            if f.len() < 3 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A numeric id as runc accepts it (0..=i32::MAX); `Ok(None)` when `s` is not a number.
fn parse_id(s: &str, what: &str, userstr: &str) -> Result<Option<u32>, SpecError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(Some(v as u32)),
        _ => Err(invalid(format!(
            "invalid user {userstr:?}: {what} {s} out of range"
        ))),
    }
}

fn id_from_cri(v: i64, field: &str) -> Result<u32, SpecError> {
    if (0..=i64::from(i32::MAX)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(invalid(format!("{field} {v} is out of range")))
    }
}

pub fn resolve(
    sc: &cri::LinuxContainerSecurityContext,
    image_user: &str,
    layers: &[std::path::PathBuf],
) -> Result<ResolvedUser, SpecError> {
    let mut db = Db::new(layers);

    let mut user = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        id_from_cri(u.value, "run_as_user")?.to_string()
    } else {
        String::new()
    };
    if let Some(g) = &sc.run_as_group {
        let gid = id_from_cri(g.value, "run_as_group")?;
        if user.is_empty() {
            return Err(invalid(format!(
                "run_as_group {gid} is set without run_as_user or run_as_username"
            )));
        }
        user = format!("{user}:{gid}");
    }
    if user.is_empty() {
        user = image_user.to_owned();
    }

    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        uid_gid(&mut db, &user)?
    };

    let policy =
        cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
            invalid(format!(
                "unknown supplemental_groups_policy {}",
                sc.supplemental_groups_policy
            ))
        })?;
    let mut gids = vec![gid];
    if policy == cri::SupplementalGroupsPolicy::Merge {
        // containerd looks the groups up for the user as named in the request (the image's USER
        // without its group part, "0" by default), not for the resolved uid.
        let who = if !sc.run_as_username.is_empty() {
            sc.run_as_username.clone()
        } else if let Some(u) = &sc.run_as_user {
            u.value.to_string()
        } else if !image_user.is_empty() {
            image_user.split(':').next().unwrap_or_default().to_owned()
        } else {
            "0".to_owned()
        };
        gids.extend(image_groups(&mut db, &who)?);
    }
    for g in &sc.supplemental_groups {
        gids.push(id_from_cri(*g, "supplemental_groups entry")?);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

/// uid and primary gid of a user string (`name`, `uid`, `user:group`).
fn uid_gid(db: &mut Db, userstr: &str) -> Result<(u32, u32), SpecError> {
    let parts: Vec<&str> = userstr.split(':').collect();
    match parts.as_slice() {
        [user] => match parse_id(user, "uid", userstr)? {
            Some(uid) => {
                let gid = db
                    .passwd()?
                    .iter()
                    .find(|e| e.uid == uid)
                    .map_or(0, |e| e.gid);
                Ok((uid, gid))
            }
            None => {
                let e = db
                    .passwd()?
                    .iter()
                    .find(|e| e.name == *user)
                    .ok_or_else(|| unknown_user(user))?;
                Ok((e.uid, e.gid))
            }
        },
        [user, group] => {
            let uid = match parse_id(user, "uid", userstr)? {
                Some(uid) => uid,
                None => {
                    db.passwd()?
                        .iter()
                        .find(|e| e.name == *user)
                        .ok_or_else(|| unknown_user(user))?
                        .uid
                }
            };
            let gid = match parse_id(group, "gid", userstr)? {
                Some(gid) => gid,
                None => {
                    db.group()?
                        .iter()
                        .find(|g| g.name == *group)
                        .ok_or_else(|| {
                            invalid(format!(
                                "group {group:?} not found in the image's /etc/group"
                            ))
                        })?
                        .gid
                }
            };
            Ok((uid, gid))
        }
        _ => Err(invalid(format!("invalid user {userstr:?}"))),
    }
}

fn unknown_user(name: &str) -> SpecError {
    invalid(format!(
        "user {name:?} not found in the image's /etc/passwd"
    ))
}

/// The gids of the groups in /etc/group that list `who` (a name, or a uid looked up in passwd).
fn image_groups(db: &mut Db, who: &str) -> Result<Vec<u32>, SpecError> {
    let name = if who.bytes().all(|b| b.is_ascii_digit()) && !who.is_empty() {
        let Ok(uid) = who.parse::<u32>() else {
            return Ok(Vec::new());
        };
        match db.passwd()?.iter().find(|e| e.uid == uid) {
            Some(e) => e.name.clone(),
            None => return Ok(Vec::new()),
        }
    } else {
        who.to_owned()
    };
    Ok(db
        .group()?
        .iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{Fixture, GROUP, Layers, PASSWD};

    fn sc() -> cri::LinuxContainerSecurityContext {
        Default::default()
    }

    fn layers() -> Layers {
        let l = Layers::new(1);
        l.write(0, "etc/passwd", PASSWD);
        l.write(0, "etc/group", GROUP);
        l
    }

    fn ru(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
        }
    }

    #[test]
    fn default_is_root_with_roots_groups() {
        let l = layers();
        assert_eq!(resolve(&sc(), "", &l.dirs()).unwrap(), ru(0, 0, &[0]));
    }

    #[test]
    fn image_user_by_name() {
        let l = layers();
        // alice: primary 1000, listed in users(100) and wheel(10).
        assert_eq!(
            resolve(&sc(), "alice", &l.dirs()).unwrap(),
            ru(1000, 1000, &[10, 100, 1000])
        );
    }

    #[test]
    fn username_overrides_image_user() {
        let l = layers();
        let mut s = sc();
        s.run_as_username = "bob".into();
        assert_eq!(
            resolve(&s, "alice", &l.dirs()).unwrap(),
            ru(1001, 100, &[10, 29, 100])
        );
    }

    #[test]
    fn unknown_name_is_invalid_argument_naming_it() {
        let l = layers();
        let mut s = sc();
        s.run_as_username = "mallory".into();
        let err = resolve(&s, "", &l.dirs()).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument(m) if m.contains("\"mallory\"")));
        let err = resolve(&sc(), "nobody-here", &l.dirs()).unwrap_err();
        assert!(err.to_string().contains("nobody-here"));
    }

    #[test]
    fn numeric_uid_without_entry_gets_gid_0() {
        let l = layers();
        let mut s = sc();
        s.run_as_user = Some(cri::Int64Value { value: 4242 });
        assert_eq!(resolve(&s, "", &l.dirs()).unwrap(), ru(4242, 0, &[0]));
        // With an entry: its gid and groups (found by the entry's name).
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        assert_eq!(
            resolve(&s, "", &l.dirs()).unwrap(),
            ru(1000, 1000, &[10, 100, 1000])
        );
        // No passwd at all.
        let empty = Layers::new(1);
        s.run_as_user = Some(cri::Int64Value { value: 7 });
        assert_eq!(resolve(&s, "", &empty.dirs()).unwrap(), ru(7, 0, &[0]));
    }

    #[test]
    fn run_as_group_overrides_gid() {
        let l = layers();
        let mut s = sc();
        s.run_as_username = "alice".into();
        s.run_as_group = Some(cri::Int64Value { value: 555 });
        assert_eq!(
            resolve(&s, "", &l.dirs()).unwrap(),
            ru(1000, 555, &[10, 100, 555])
        );
    }

    #[test]
    fn run_as_group_without_user_is_invalid() {
        let l = layers();
        let mut s = sc();
        s.run_as_group = Some(cri::Int64Value { value: 5 });
        assert!(matches!(
            resolve(&s, "alice", &l.dirs()),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn image_user_with_group_forms() {
        let l = layers();
        assert_eq!(
            resolve(&sc(), "alice:wheel", &l.dirs()).unwrap(),
            ru(1000, 10, &[10, 100])
        );
        assert_eq!(
            resolve(&sc(), "1001:29", &l.dirs()).unwrap(),
            ru(1001, 29, &[10, 29])
        );
        assert_eq!(
            resolve(&sc(), "5000:audio", &l.dirs()).unwrap(),
            ru(5000, 29, &[29])
        );
        assert!(resolve(&sc(), "alice:nogroup", &l.dirs()).is_err());
        assert!(resolve(&sc(), "a:b:c", &l.dirs()).is_err());
        assert!(resolve(&sc(), "99999999999", &l.dirs()).is_err());
    }

    #[test]
    fn supplemental_groups_merge_and_strict() {
        let l = layers();
        let mut s = sc();
        s.run_as_username = "alice".into();
        s.supplemental_groups = vec![3000, 10];
        assert_eq!(
            resolve(&s, "", &l.dirs()).unwrap(),
            ru(1000, 1000, &[10, 100, 1000, 3000])
        );
        s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(&s, "", &l.dirs()).unwrap(),
            ru(1000, 1000, &[10, 1000, 3000])
        );
        s.supplemental_groups_policy = 7;
        assert!(resolve(&s, "", &l.dirs()).is_err());
    }

    #[test]
    fn whiteout_in_higher_layer_hides_passwd() {
        let l = layers();
        let l2 = Layers::new(2);
        l2.write(0, "etc/passwd", PASSWD);
        l2.whiteout(1, "etc/passwd");
        drop(l);
        let err = resolve(&sc(), "alice", &l2.dirs()).unwrap_err();
        assert!(err.to_string().contains("alice"));
    }

    #[test]
    fn top_layer_passwd_wins() {
        let l = Layers::new(2);
        l.write(0, "etc/passwd", PASSWD);
        l.write(1, "etc/passwd", "alice:x:2000:2000::/:/bin/sh\n");
        assert_eq!(
            resolve(&sc(), "alice", &l.dirs()).unwrap(),
            ru(2000, 2000, &[2000])
        );
    }

    #[test]
    fn spec_carries_the_user() {
        let mut f = Fixture::new();
        f.sc().run_as_username = "alice".into();
        let spec = f.ok();
        let u = spec.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
        assert_eq!(u.additional_gids().as_deref(), Some(&[10, 100, 1000][..]));
        f.sc().run_as_username = "nobody-at-all".into();
        assert!(f.invalid().contains("nobody-at-all"));
    }
}
