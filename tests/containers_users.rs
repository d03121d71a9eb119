//! The user a container runs as, checked from inside busybox containers through CRI: the
//! image's USER (uid, name, uid:gid, name:gid, groups from the image's /etc/group),
//! `run_as_user`, `run_as_username`, `run_as_group`, `supplemental_groups` and
//! `supplemental_groups_policy`, read from `/proc/self/status`. Needs root.

mod support;

use std::collections::BTreeSet;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, status_field, with_security};
use support::fixtures::CRI_TOOLS_REPO;

/// uid, gid and supplementary groups.
type Ids = (u32, u32, BTreeSet<u32>);

/// The `Uid`, `Gid` and `Groups` of a container's init, from `/proc/self/status`.
async fn ids(pod: &Pod, config: cri::ContainerConfig) -> Ids {
    let s = pod.run_ok(config).await.stdout;
    let first = |key: &str| -> u32 {
        let v = status_field(&s, key).unwrap_or_else(|| panic!("{key} in {s}"));
        let all: BTreeSet<&str> = v.split_whitespace().collect();
        assert_eq!(all.len(), 1, "real/effective/saved/fs {key} differ: {v}");
        v.split_whitespace().next().unwrap().parse().unwrap()
    };
    let groups = status_field(&s, "Groups")
        .unwrap_or_default()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    (first("Uid"), first("Gid"), groups)
}

#[tokio::test(flavor = "multi_thread")]
async fn users_and_groups() {
    let env = Env::shared();
    let busybox = env.busybox();
    env.pull(&busybox).await;
    let image = |name: &str| env.image(&format!("{CRI_TOOLS_REPO}/{name}:latest"));
    for name in [
        "test-image-user-uid",
        "test-image-user-username",
        "test-image-user-uid-group",
        "test-image-user-username-group",
        "test-image-predefined-group",
    ] {
        env.pull(&image(name)).await;
    }
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let status = "cat /proc/self/status";
    let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
    let int = |v| Some(cri::Int64Value { value: v });

    let mut cases: Vec<(&str, cri::ContainerConfig, Ids)> = vec![
        ("root", pod.sh("root", &busybox, status), (0, 0, set(&[0]))),
        (
            "image uid",
            pod.sh("img-uid", &image("test-image-user-uid"), status),
            (1002, 0, set(&[0])),
        ),
        (
            "image name",
            pod.sh("img-name", &image("test-image-user-username"), status),
            (33, 33, set(&[33])),
        ),
        (
            "image uid:gid",
            pod.sh("img-uid-gid", &image("test-image-user-uid-group"), status),
            (1003, 1004, set(&[1004])),
        ),
        (
            "image name:gid",
            pod.sh(
                "img-name-gid",
                &image("test-image-user-username-group"),
                status,
            ),
            (33, 1004, set(&[1004])),
        ),
        (
            "image groups",
            pod.sh("img-groups", &image("test-image-predefined-group"), status),
            (1000, 1000, set(&[1000, 50000])),
        ),
    ];
    let secured = |name: &str, image: &str, f: &dyn Fn(&mut cri::LinuxContainerSecurityContext)| {
        with_security(pod.sh(name, image, status), f)
    };
    cases.push((
        "run_as_user",
        secured("run-as-user", &busybox, &|sc| sc.run_as_user = int(1234)),
        (1234, 0, set(&[0])),
    ));
    cases.push((
        "run_as_user over image USER",
        secured("run-as-user-img", &image("test-image-user-uid"), &|sc| {
            sc.run_as_user = int(0)
        }),
        (0, 0, set(&[0])),
    ));
    cases.push((
        "run_as_username",
        secured("run-as-username", &busybox, &|sc| {
            sc.run_as_username = "www-data".into()
        }),
        (33, 33, set(&[33])),
    ));
    cases.push((
        "run_as_group",
        secured("run-as-group", &busybox, &|sc| {
            sc.run_as_user = int(1001);
            sc.run_as_group = int(2002);
        }),
        (1001, 2002, set(&[2002])),
    ));
    cases.push((
        "supplemental_groups",
        secured("supplemental", &busybox, &|sc| {
            sc.run_as_user = int(1001);
            sc.supplemental_groups = vec![3000, 4000];
        }),
        (1001, 0, set(&[0, 3000, 4000])),
    ));
    cases.push((
        "supplemental_groups merged with the image's",
        secured("merge", &image("test-image-predefined-group"), &|sc| {
            sc.supplemental_groups = vec![60000];
        }),
        (1000, 1000, set(&[1000, 50000, 60000])),
    ));
    cases.push((
        "supplemental_groups_policy Strict",
        secured("strict", &image("test-image-predefined-group"), &|sc| {
            sc.supplemental_groups = vec![60000];
            sc.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        }),
        (1000, 1000, set(&[1000, 60000])),
    ));
    let mut failures = Vec::new();
    for (what, config, want) in cases {
        let got = ids(&pod, config).await;
        if got != want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
