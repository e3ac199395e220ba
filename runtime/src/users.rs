//! Which uid, gid and groups a container's process runs as: from the
//! container's security context or else the image's `User` ("name",
//! "uid", "name:group", "uid:gid"), with names looked up in the container's
//! own /etc/passwd and /etc/group (as Docker and containerd do).

use std::path::Path;

use crate::error::{Result, RuntimeError};
use crate::oci::bundle::RunAs;
use crate::proto::LinuxContainerSecurityContext;

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

/// Resolves the user of a container whose root filesystem is `rootfs`.
pub fn resolve(
    rootfs: &Path,
    security: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<RunAs> {
    let passwd = read_passwd(rootfs);
    let groups = read_groups(rootfs);
    let sc = security.cloned().unwrap_or_default();
    let (user, group) = if let Some(uid) = &sc.run_as_user {
        (
            uid.value.to_string(),
            sc.run_as_group.as_ref().map(|g| g.value.to_string()),
        )
    } else if !sc.run_as_username.is_empty() {
        (
            sc.run_as_username.clone(),
            sc.run_as_group.as_ref().map(|g| g.value.to_string()),
        )
    } else {
        let (u, g) = match image_user.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (image_user.to_string(), None),
        };
        let g = sc.run_as_group.as_ref().map(|g| g.value.to_string()).or(g);
        (u, g)
    };
    let (uid, name, default_gid) = if user.is_empty() {
        (0, Some("root".to_string()), 0)
    } else if let Ok(uid) = user.parse::<u32>() {
        let entry = passwd.iter().find(|p| p.uid == uid);
        (
            uid,
            entry.map(|p| p.name.clone()),
            entry.map_or(0, |p| p.gid),
        )
    } else {
        let entry = passwd.iter().find(|p| p.name == user).ok_or_else(|| {
            RuntimeError::invalid(format!("user {user:?} is not in the image's /etc/passwd"))
        })?;
        (entry.uid, Some(entry.name.clone()), entry.gid)
    };
    let gid = match group {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    RuntimeError::invalid(format!("group {g:?} is not in the image's /etc/group"))
                })?,
        },
    };
    let mut additional: Vec<u32> = Vec::new();
    if let Some(name) = &name {
        additional.extend(
            groups
                .iter()
                .filter(|g| g.members.contains(name))
                .map(|g| g.gid),
        );
    }
    for g in &sc.supplemental_groups {
        let g = u32::try_from(*g).map_err(|_| {
            RuntimeError::invalid(format!("supplemental group {g} is out of range"))
        })?;
        additional.push(g);
    }
    additional.retain(|g| *g != gid);
    additional.sort_unstable();
    additional.dedup();
    Ok(RunAs {
        uid,
        gid,
        additional_gids: additional,
    })
}

fn read_passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    lines(rootfs, "etc/passwd")
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn read_groups(rootfs: &Path) -> Vec<GroupEntry> {
    lines(rootfs, "etc/group")
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Lines of a file inside the rootfs; a symlink is not followed out of it
/// because the file is read only when it is a regular file.
fn lines(rootfs: &Path, rel: &str) -> impl Iterator<Item = String> {
    let path = rootfs.join(rel);
    let text = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Int64Value;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nadm:x:4:www-data\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_names_numbers_and_overrides() {
        let r = rootfs();
        let root = resolve(r.path(), None, "").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let www = resolve(r.path(), None, "www-data").unwrap();
        assert_eq!(
            (www.uid, www.gid, www.additional_gids.clone()),
            (33, 33, vec![4])
        );
        let numeric = resolve(r.path(), None, "1000:2000").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1000, 2000));
        let sc = LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 33 }),
            supplemental_groups: vec![5],
            ..Default::default()
        };
        let by_sc = resolve(r.path(), Some(&sc), "root").unwrap();
        assert_eq!((by_sc.uid, by_sc.gid), (33, 33));
        assert_eq!(by_sc.additional_gids, vec![4, 5]);
        assert!(resolve(r.path(), None, "nobody").is_err());
        assert!(resolve(r.path(), None, "root:nogroup").is_err());
    }
}
